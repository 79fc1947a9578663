import BerthAPI
import BerthCore
import CLibXML2
import HTTPClient
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An element of a configuration file with the line its start tag begins on, so that every
/// problem found while validating it can point at the line to fix.
struct LineXMLElement: Sendable, Equatable {
    var name: String
    var attributes: [String: String]
    var line: Int
    /// The element's own character data (not its children's), as written.
    var text: String
    var children: [LineXMLElement]

    /// The value of a leaf element: configuration files are often indented, and the whitespace
    /// around a value is never part of it.
    var value: String { text.trimmed }
}

extension LineXMLElement {
    /// The known value-holding children of a container element such as `<Config>` or `<User>`,
    /// by name, while every other child is reported: unknown elements are warned about (a typo
    /// should be seen, not fatal), a repeated element is an error (which of two values wins
    /// would be a guess), and elements or attributes inside a value are reported.
    func valueChildren(known: [String], problems: inout ConfigProblemList) -> [String: LineXMLElement] {
        warnAboutStrayContent(problems: &problems)
        var found: [String: LineXMLElement] = [:]
        for child in children {
            guard known.contains(child.name) else {
                var message = "unknown element <\(child.name)> ignored"
                if let meant = known.first(where: { $0.lowercased() == child.name.lowercased() }) {
                    message += " (element names are case-sensitive: <\(meant)>)"
                }
                problems.warning(line: child.line, message)
                continue
            }
            if let first = found[child.name] {
                problems.error(line: child.line, "duplicate <\(child.name)> (first at line \(first.line))")
                continue
            }
            found[child.name] = child
            for nested in child.children {
                problems.error(line: nested.line, "<\(child.name)> holds a value, not elements; remove <\(nested.name)>")
            }
            for attribute in child.attributes.keys.sorted() {
                problems.warning(line: child.line, "attribute \(attribute) on <\(child.name)> ignored")
            }
        }
        return found
    }

    /// Text or attributes on a container element carry no meaning; a leftover such as the
    /// "。。。" placeholder of the esProc design's example files should be seen.
    func warnAboutStrayContent(problems: inout ConfigProblemList) {
        if !value.isEmpty {
            problems.warning(line: line, "text \"\(value)\" inside <\(name)> ignored")
        }
        for attribute in attributes.keys.sorted() {
            problems.warning(line: line, "attribute \(attribute) on <\(name)> ignored")
        }
    }
}

/// Why a file is not well-formed XML, and the line where the parser noticed.
struct LineXMLSyntaxError: Error, Sendable, Equatable {
    var line: Int
    var reason: String
}

/// A configuration file that could not be read as XML at all, as the one problem to report.
struct UnusableConfigFile: Error, Sendable {
    var problem: ConfigProblem
}

/// Reads configuration files into `LineXMLElement` trees with libxml2.
enum LineXML {
    /// Reads and parses a file; a file that cannot be read or is not well-formed becomes the one
    /// problem to report, because nothing past it can be checked.
    static func load(path: String) -> Result<LineXMLElement, UnusableConfigFile> {
        let bytes: [UInt8]
        do throws(ConfigError) {
            bytes = try ConfigFileReader.contents(of: path)
        } catch {
            return .failure(UnusableConfigFile(
                problem: ConfigProblem(file: path, line: 0, message: "cannot read the file: \(error.message)")))
        }
        guard bytes.count <= ConfigFileReader.maximumSize else {
            return .failure(UnusableConfigFile(
                problem: ConfigProblem(file: path, line: 1, message: "the file is over \(ConfigFileReader.maximumSize >> 20) MB; a configuration file is far smaller")))
        }
        return parse(bytes).mapError { syntax in
            UnusableConfigFile(
                problem: ConfigProblem(file: path, line: syntax.line, message: "not well-formed XML: \(syntax.reason)"))
        }
    }

    static func parse(_ original: [UInt8]) -> Result<LineXMLElement, LineXMLSyntaxError> {
        let bytes: [UInt8]
        switch XMLEncoding.utf8(original) {
        case .success(let converted): bytes = converted
        case .failure(let error): return .failure(error)
        }
        return TreeBuilder(startLines: StartLineLocator(bytes)).parse(bytes)
    }
}

/// Builds the element tree from libxml2's SAX callbacks.
///
/// libxml2 is used directly rather than through FoundationXML's `XMLParser`, which would link the
/// rest of Foundation (CoreFoundation, ICU) into both daemons for the sake of two config files.
/// The parser runs without network access, loads no DTD and substitutes no entity beyond the five
/// XML predefines: a configuration file has no use for them, and they are how XML attacks work.
private final class TreeBuilder {
    private static let initialized: Void = xmlInitParser()

    private let startLines: StartLineLocator
    private var open: [LineXMLElement] = []
    private var root: LineXMLElement?
    private var firstError: LineXMLSyntaxError?
    private var context: xmlParserCtxtPtr?

    init(startLines: StartLineLocator) {
        self.startLines = startLines
    }

    func parse(_ bytes: [UInt8]) -> Result<LineXMLElement, LineXMLSyntaxError> {
        _ = Self.initialized
        var handler = xmlSAXHandler()
        handler.initialized = XML_SAX2_MAGIC
        handler.startElementNs = { user, name, prefix, _, _, _, count, _, attributes in
            TreeBuilder.from(user).started(name, prefix, Int(count), attributes)
        }
        handler.endElementNs = { user, _, _, _ in
            TreeBuilder.from(user).ended()
        }
        handler.characters = { user, text, count in
            TreeBuilder.from(user).found(text, count)
        }
        handler.cdataBlock = { user, text, count in
            TreeBuilder.from(user).found(text, count)
        }
        handler.serror = { user, error in
            TreeBuilder.from(user).failed(error)
        }
        let user = Unmanaged.passUnretained(self).toOpaque()
        guard let context = xmlCreatePushParserCtxt(&handler, user, nil, 0, nil) else {
            return .failure(LineXMLSyntaxError(line: 1, reason: "the XML parser could not start (out of memory?)"))
        }
        defer { xmlFreeParserCtxt(context) }
        self.context = context
        xmlCtxtUseOptions(context, Int32(XML_PARSE_NONET.rawValue))
        let status = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { xmlParseChunk(context, $0.baseAddress, Int32($0.count), 1) }
        }
        if let firstError {
            return .failure(firstError)
        }
        if status != 0 || context.pointee.wellFormed == 0 {
            return .failure(LineXMLSyntaxError(line: max(Int(xmlSAX2GetLineNumber(context)), 1), reason: reason(forCode: Int(status))))
        }
        guard let root else {
            // An empty file parses "successfully" with no elements at all.
            return .failure(LineXMLSyntaxError(line: 1, reason: "the document is empty (no root element)"))
        }
        return .success(root)
    }

    private static func from(_ user: UnsafeMutableRawPointer?) -> TreeBuilder {
        Unmanaged<TreeBuilder>.fromOpaque(user!).takeUnretainedValue()
    }

    private var position: (line: Int, column: Int) {
        (Int(xmlSAX2GetLineNumber(context)), Int(xmlSAX2GetColumnNumber(context)))
    }

    /// `attributes` holds five pointers an attribute: local name, prefix, URI, and the value's
    /// start and end (values are not NUL-terminated).
    private func started(_ name: UnsafePointer<xmlChar>?, _ prefix: UnsafePointer<xmlChar>?, _ count: Int, _ attributes: UnsafeMutablePointer<UnsafePointer<xmlChar>?>?) {
        func qualified(_ name: UnsafePointer<xmlChar>?, _ prefix: UnsafePointer<xmlChar>?) -> String {
            (prefix.map { String(cString: $0) + ":" } ?? "") + (name.map { String(cString: $0) } ?? "")
        }
        var attributeValues: [String: String] = [:]
        if let attributes {
            for index in 0..<count {
                let fields = attributes + index * 5
                guard let start = fields[3], let end = fields[4] else { continue }
                attributeValues[qualified(fields[0], fields[1])] = String(decoding: UnsafeBufferPointer(start: start, count: end - start), as: UTF8.self)
            }
        }
        let (tagEndLine, tagEndColumn) = position
        let line = startLines.startLine(ofTagEndingAt: tagEndLine, column: tagEndColumn)
        open.append(LineXMLElement(name: qualified(name, prefix), attributes: attributeValues, line: line, text: "", children: []))
    }

    private func found(_ text: UnsafePointer<xmlChar>?, _ count: Int32) {
        guard !open.isEmpty, let text else { return }
        open[open.count - 1].text += String(decoding: UnsafeBufferPointer(start: text, count: Int(count)), as: UTF8.self)
    }

    private func ended() {
        guard let finished = open.popLast() else { return }
        if open.isEmpty {
            root = finished
        } else {
            open[open.count - 1].children.append(finished)
        }
    }

    private func failed(_ error: xmlErrorPtr?) {
        // The first error is the cause; libxml2 often reports follow-on errors after it.
        guard firstError == nil else { return }
        let code = error.map { Int($0.pointee.code) } ?? 0
        firstError = LineXMLSyntaxError(line: max(position.line, 1), reason: reason(forCode: code))
        xmlStopParser(context)
    }

    /// libxml2 gives an error number, so the common mistakes in hand-edited files are put into
    /// words here, with the open element as context.
    private func reason(forCode code: Int) -> String {
        let innermost = open.last.map { "<\($0.name)> (line \($0.line))" }
        switch code {
        case 4:
            return "the document is empty"
        case 5, 77:
            if let innermost {
                return "\(innermost) is never closed"
            }
            return root == nil ? "the document has no root element" : "content after the end of the root element"
        case 76:
            if let innermost {
                return "closing tag does not match \(innermost)"
            }
            return "closing tag does not match the open element"
        case 86:
            return "content after the end of the root element"
        case 9:
            return "a character that XML does not allow"
        case 22, 68:
            return "a name must follow '&' or '<' (write &amp; for a literal & and &lt; for <)"
        case 23:
            return "an entity reference is missing its ';' (write &amp; for a literal &)"
        case 26, 27:
            return "undefined entity (only &amp; &lt; &gt; &quot; &apos; are predefined)"
        case 38:
            return "'<' inside an attribute value (write &lt;)"
        case 39, 40, 41:
            return "an attribute value must be quoted"
        case 42:
            return "an attribute is given twice"
        case 45:
            return "a comment is never closed (missing -->)"
        case 57:
            return "the <?xml ...?> declaration is not finished"
        case 64:
            return "<?xml ...?> may only appear at the very start of the file"
        case 73:
            return "'>' expected"
        case 80:
            return "'--' is not allowed inside a comment"
        case 81:
            return "the file is not valid in its declared encoding (save it as UTF-8)"
        case 85:
            return "elements are not properly nested"
        default:
            return "XML parser error \(code)"
        }
    }
}

/// Finds the line a start tag begins on.
///
/// libxml2 reports the position where the start tag ends, which is a later line when the
/// tag spans lines (attributes one per line). No `<` can occur inside a tag, so the nearest `<`
/// before that position is the tag's own.
private struct StartLineLocator {
    /// The document's Unicode scalars split into lines, without the line breaks.
    private let lines: [[Unicode.Scalar]]

    init(_ bytes: [UInt8]) {
        var lines: [[Unicode.Scalar]] = [[]]
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            if scalar == "\n" {
                lines.append([])
            } else {
                lines[lines.count - 1].append(scalar)
            }
        }
        self.lines = lines
    }

    /// `column` counts characters up to and including the tag's `>`, as libxml2 does.
    func startLine(ofTagEndingAt line: Int, column: Int) -> Int {
        guard line >= 1, line <= lines.count else { return max(line, 1) }
        if lines[line - 1].prefix(max(column, 0)).contains("<") {
            return line
        }
        var earlier = line - 1
        while earlier >= 1 {
            if lines[earlier - 1].contains("<") {
                return earlier
            }
            earlier -= 1
        }
        return line
    }
}

/// Reads whole files with POSIX calls, because their `errno` text ("Permission denied",
/// "No such file or directory") is what an administrator needs to see.
enum ConfigFileReader {
    /// Far above any real cluster's files (thousands of users); a bigger one is a mistake, and
    /// refusing it up front keeps a stray log or dump from being parsed for seconds.
    static let maximumSize = 2 << 20

    /// The file's bytes; reading stops once past `maximumSize`, so callers tell a file that is too
    /// big by its length.
    static func contents(of path: String) throws(ConfigError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ConfigError(currentErrnoText())
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { buffer in
                read(descriptor, buffer.baseAddress, buffer.count)
            }
            if count == 0 {
                return contents
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw ConfigError(currentErrnoText())
            }
            contents.append(contentsOf: chunk[0..<count])
            if contents.count > maximumSize {
                return contents
            }
        }
    }

    private static func currentErrnoText() -> String {
        String(cString: strerror(errno))
    }
}
