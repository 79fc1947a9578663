import BerthTLS
import Foundation
import Testing

/// Reading a certificate or key file: whole, and never more than the limit.
struct PEMFileTests {
    func withFile(_ contents: Data, _ body: (String) throws -> Void) throws {
        let path = NSTemporaryDirectory() + "berth-pem-\(UUID().uuidString).pem"
        try contents.write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        try body(path)
    }

    @Test func aFileIsReadWhole() throws {
        let text = "-----BEGIN CERTIFICATE-----\n" + String(repeating: "QUJD", count: 3000) + "\n-----END CERTIFICATE-----\n"
        try withFile(Data(text.utf8)) { path in
            let read = try PEMFile.read(path)
            #expect(read == text)
        }
        try withFile(Data()) { path in
            let read = try PEMFile.read(path)
            #expect(read.isEmpty)
        }
    }

    /// A file whose size says nothing (as in /proc) is read to its end all the same.
    @Test func aFileLargerThanItsSizeSaysIsReadToItsEnd() throws {
        let text = try PEMFile.read("/proc/self/maps")
        #expect(text.utf8.count > 4096 && text.hasSuffix("\n"))
    }

    @Test func aFileOverOneMegabyteIsRefused() throws {
        try withFile(Data(count: 1 << 20)) { path in
            let read = try PEMFile.read(path)
            #expect(read.utf8.count == 1 << 20)
        }
        try withFile(Data(count: (1 << 20) + 1)) { path in
            #expect(throws: TLSFileError.self) { try PEMFile.read(path) }
        }
    }
}
