import BerthAPI
import BerthCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Converts a configuration file declared in another encoding than UTF-8 (a hand-made
/// `docker_user.xml` in GBK, say) to UTF-8 before the XML parser sees it.
///
/// libxml2 reaches such encodings through iconv, and version 2.9 crashes the whole process on a
/// byte that is invalid in them: a bad file must be a problem on a line, never a crash of
/// `check-config` or a reload of the running manager.
enum XMLEncoding {
    /// The bytes as UTF-8 with their declaration saying so, or the line that cannot be converted.
    /// UTF-8 and UTF-16 files pass unchanged: libxml2 reads those itself.
    static func utf8(_ bytes: [UInt8]) -> Result<[UInt8], LineXMLSyntaxError> {
        guard let declared = declaredEncoding(bytes) else { return .success(bytes) }
        let name = String(decoding: bytes[declared], as: UTF8.self)
        let normalized = name.uppercased().filter { $0 != "-" && $0 != "_" }
        if normalized == "UTF8" || normalized.hasPrefix("UTF16") || normalized.hasPrefix("UCS2") {
            return .success(bytes)
        }
        var relabelled = bytes
        relabelled.replaceSubrange(declared, with: Array("UTF-8".utf8))
        return convert(relabelled, from: name)
    }

    /// Where the encoding name of `<?xml … encoding="NAME" …?>` at the start of the file is.
    private static func declaredEncoding(_ bytes: [UInt8]) -> Range<Int>? {
        let start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        guard bytes[start...].starts(with: Array("<?xml".utf8)) else { return nil }
        let head = bytes[start..<min(bytes.count, start + 256)]
        guard let end = head.indices.first(where: { head[$0] == UInt8(ascii: "?") && $0 + 1 < bytes.count && bytes[$0 + 1] == UInt8(ascii: ">") }),
            let key = find(Array("encoding".utf8), in: bytes, from: start, to: end)
        else { return nil }
        var index = key + 8
        while index < end, [0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: "=")].contains(bytes[index]) { index += 1 }
        guard index < end, bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "'") else { return nil }
        let quote = bytes[index]
        guard let close = bytes[(index + 1)..<end].firstIndex(of: quote), close > index + 1 else { return nil }
        let name = (index + 1)..<close
        guard bytes[name].allSatisfy({ ConfigSyntax.isLetterOrDigit($0) || Array("-_.:".utf8).contains($0) }) else { return nil }
        return name
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int, to: Int) -> Int? {
        guard to - from >= needle.count else { return nil }
        return (from...(to - needle.count)).first { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
    }

    private static func convert(_ bytes: [UInt8], from encoding: String) -> Result<[UInt8], LineXMLSyntaxError> {
        let converter = iconv_open("UTF-8", encoding)
        guard let converter, Int(bitPattern: converter) != -1 else {
            return .failure(LineXMLSyntaxError(line: 1, reason: "unknown encoding \"\(encoding)\" (save the file as UTF-8)"))
        }
        defer { iconv_close(converter) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: bytes.count * 4 + 16)
        let (failedAt, written): (Int?, Int) = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                var inPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(inBuffer.baseAddress)?.assumingMemoryBound(to: CChar.self)
                var inLeft = inBuffer.count
                var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(outBuffer.baseAddress)?.assumingMemoryBound(to: CChar.self)
                var outLeft = outBuffer.count
                let result = iconv(converter, &inPointer, &inLeft, &outPointer, &outLeft)
                return (result == -1 ? inBuffer.count - inLeft : nil, outBuffer.count - outLeft)
            }
        }
        if let failedAt {
            let line = bytes[..<failedAt].count { $0 == UInt8(ascii: "\n") } + 1
            return .failure(LineXMLSyntaxError(line: line, reason: "the file is not valid in its declared encoding \(encoding) (save it as UTF-8)"))
        }
        return .success(Array(output[..<written]))
    }
}
