import Testing
import TestSupport
import UnitProtocol

@Suite struct UnitProtocolTests {
    @Test func framesRoundTripAcrossAnyChunking() throws {
        let frames: [UnitFrame] = [.stdout(Array("EID\tNAME\n".utf8)), .stderr(Array("warn\n".utf8)), .stdout([]), .exit(3)]
        let wire = frames.flatMap { $0.encoded() }
        for chunkSize in [1, 3, 7, 64, wire.count] {
            var decoder = UnitFrameDecoder()
            var decoded: [UnitFrame] = []
            var index = 0
            while index < wire.count {
                decoded += try decoder.feed(wire[index..<min(wire.count, index + chunkSize)])
                index += chunkSize
            }
            #expect(decoded == frames, "chunk size \(chunkSize)")
            #expect(decoder.pendingByteCount == 0)
        }
    }

    @Test func largeFramesSplitOverManyChunksComeOutWhole() throws {
        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let frames: [UnitFrame] = [.stdout(big), .stdout(Array("tail\n".utf8)), .stderr(Array(big.prefix(70_000))), .exit(0)]
        let wire = frames.flatMap { $0.encoded() }
        for chunkSize in [5, 4096, 65_536, 100_003] {
            var decoder = UnitFrameDecoder()
            var decoded: [UnitFrame] = []
            var index = 0
            while index < wire.count {
                // A sequence without contiguous storage takes the other way in.
                let chunk = wire[index..<min(wire.count, index + chunkSize)]
                decoded += try chunkSize == 5 ? decoder.feed(AnySequence(chunk)) : decoder.feed(chunk)
                index += chunkSize
            }
            #expect(decoded == frames, "chunk size \(chunkSize)")
            #expect(decoder.pendingByteCount == 0)
        }
    }

    /// A sender announcing a frame of gigabytes is refused on its header, before anything is gathered.
    @Test func aFrameLargerThanTheLimitIsRefusedOnItsHeader() throws {
        var decoder = UnitFrameDecoder(maxFrame: 1024)
        #expect(try decoder.feed(UnitFrame.stdout(Array(repeating: 1, count: 1024)).encoded()).count == 1)
        let huge: [UInt8] = [1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]
        #expect(throws: UnitFrameTooLarge.self) { try decoder.feed(huge.prefix(5)) + decoder.feed(huge.dropFirst(5)) }
        var fresh = UnitFrameDecoder(maxFrame: 1024)
        #expect(throws: UnitFrameTooLarge.self) { try fresh.feed(huge) }
    }

    @Test func payloadsAreShownInPlaceAndAThrowingReaderStopsTheChunk() throws {
        struct Stop: Error {}
        let wire = ([UnitFrame.stdout(Array("one\n".utf8)), .stdout(Array("two\n".utf8)), .exit(0)]).flatMap { $0.encoded() }
        var decoder = UnitFrameDecoder()
        var seen: [String] = []
        #expect(throws: Stop.self) {
            try wire.withUnsafeBytes { chunk in
                try decoder.feed(chunk) { frame in
                    guard case .stdout(let payload) = frame else { return }
                    // The payload lies inside the chunk itself: nothing was copied.
                    #expect(payload.baseAddress! >= chunk.baseAddress! && payload.baseAddress! + payload.count <= chunk.baseAddress! + chunk.count)
                    seen.append(String(decoding: payload, as: UTF8.self))
                    throw Stop()
                }
            }
        }
        #expect(seen == ["one\n"])
    }

    /// A frame larger than the pieces the network gives passes on piece by piece, each in place:
    /// the reader holds none of it, however large the frames.
    @Test func aFrameSplitBetweenChunksPassesOnAsItArrivesWithoutBeingGathered() throws {
        let big = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let wire = [UnitFrame.stdout(big), .stderr(Array("late\n".utf8)), .exit(0)].flatMap { $0.encoded() }
        var decoder = UnitFrameDecoder()
        var out: [UInt8] = [], err: [UInt8] = [], status: Int32?
        var pieces = 0
        for start in stride(from: 0, to: wire.count, by: 65_536) {
            try wire[start..<min(wire.count, start + 65_536)].withUnsafeBytes { chunk in
                try decoder.feed(chunk) { view in
                    switch view {
                    case .stdout(let piece):
                        #expect(piece.baseAddress! >= chunk.baseAddress! && piece.baseAddress! + piece.count <= chunk.baseAddress! + chunk.count)
                        out += piece
                        pieces += 1
                    case .stderr(let piece): err += piece
                    case .exit(let code): status = code
                    }
                }
            }
            #expect(decoder.pendingByteCount <= 8)
        }
        #expect(out == big && String(decoding: err, as: UTF8.self) == "late\n" && status == 0)
        #expect(pieces == 5)
    }

    /// Streams of random frames cut at random places: the pieces of each kind, joined, are that
    /// kind's output, and the exit status comes once, last. (Seeded, so a failure repeats.)
    @Test func randomFramesCutAtRandomPlacesComeOutWhole() throws {
        var random = SeededGenerator(seed: 0x5EED)
        for _ in 0..<50 {
            var frames: [UnitFrame] = []
            for _ in 0..<Int.random(in: 0...12, using: &random) {
                // Each payload its own pattern, so bytes out of place show.
                let step = Int.random(in: 1...255, using: &random), base = Int.random(in: 0...255, using: &random)
                let payload = (0..<Int.random(in: 0...40_000, using: &random)).map { UInt8(truncatingIfNeeded: $0 &* step &+ base) }
                frames.append(Bool.random(using: &random) ? .stdout(payload) : .stderr(payload))
            }
            frames.append(.exit(Int32.random(in: -1000...1000, using: &random)))
            let wire = frames.flatMap { $0.encoded() }
            var decoder = UnitFrameDecoder()
            var out: [UInt8] = [], err: [UInt8] = [], statuses: [Int32] = []
            var index = 0
            while index < wire.count {
                let end = min(wire.count, index + Int.random(in: 1...100_000, using: &random))
                try wire[index..<end].withUnsafeBytes { chunk in
                    try decoder.feed(chunk) { view in
                        #expect(statuses.isEmpty, "output after the exit status")
                        switch view {
                        case .stdout(let piece): out += piece
                        case .stderr(let piece): err += piece
                        case .exit(let status): statuses.append(status)
                        }
                    }
                }
                index = end
            }
            var expectedOut: [UInt8] = [], expectedErr: [UInt8] = [], expectedStatus: Int32?
            for frame in frames {
                switch frame {
                case .stdout(let bytes): expectedOut += bytes
                case .stderr(let bytes): expectedErr += bytes
                case .exit(let status): expectedStatus = status
                }
            }
            #expect(out == expectedOut && err == expectedErr && statuses == [expectedStatus!])
            #expect(decoder.pendingByteCount == 0)
        }
    }

    /// An exit status is a number: a frame announcing a long one is refused, not gathered.
    @Test func anExitFrameLongerThanAStatusIsRefused() throws {
        var decoder = UnitFrameDecoder()
        #expect(throws: UnitFrameTooLarge.self) { try decoder.feed([3, 0, 0, 0, 0, 0x10, 0, 0]) }
        var fresh = UnitFrameDecoder()
        #expect(try fresh.feed(UnitFrame.exit(-2147483648).encoded()) == [.exit(-2147483648)])
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

