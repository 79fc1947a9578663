import Testing
import UnitProtocol

@Suite struct UnitProtocolTests {
    @Test func framesRoundTripAcrossAnyChunking() {
        let frames: [UnitFrame] = [.stdout(Array("EID\tNAME\n".utf8)), .stderr(Array("warn\n".utf8)), .stdout([]), .exit(3)]
        let wire = frames.flatMap { $0.encoded() }
        for chunkSize in [1, 3, 7, 64, wire.count] {
            var decoder = UnitFrameDecoder()
            var decoded: [UnitFrame] = []
            var index = 0
            while index < wire.count {
                decoded += decoder.feed(wire[index..<min(wire.count, index + chunkSize)])
                index += chunkSize
            }
            #expect(decoded == frames, "chunk size \(chunkSize)")
            #expect(decoder.pendingByteCount == 0)
        }
    }

    @Test(arguments: ["Emp.sh", "sub/report.sh", "a.b-c_d"])
    func namesInsideTheScriptDirectoryAreAccepted(name: String) {
        #expect(ScriptName.problem(with: name) == nil)
    }

    @Test(arguments: ["", "/etc/passwd", "../secret", "a/../../b", "a//b", "./x", "x\u{0}y"])
    func namesThatCanLeaveTheScriptDirectoryAreRefused(name: String) {
        #expect(ScriptName.problem(with: name) != nil)
    }
}
