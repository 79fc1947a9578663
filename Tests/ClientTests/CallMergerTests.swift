import BerthAPI
import BerthCore
import Foundation
import Testing
import UnitProtocol
@testable import Client

/// The merge of `berth call` without a network: each unit's answer is a scripted stream of frames.
@Suite struct CallMergerTests {
    let units = [HostPort(host: "127.0.0.2", port: 8281), HostPort(host: "127.0.0.3", port: 8282)]

    /// One unit's answer: frames, sent in pieces, after an optional delay before each.
    struct Answer: Sendable {
        var frames: [UnitFrame]
        var delay: Duration = .zero
        var failure: String?
    }

    /// Where the merged output goes: each takes the spool back its own way (the kernel's copy,
    /// or read and written when the output refuses it, as a file opened for appending does).
    enum Destination: CaseIterable { case file, appendedFile, pipe }

    func merge(_ answers: [Answer], header: Bool = false, into destination: Destination = .file) async throws -> String {
        if destination == .pipe {
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            let readEnd = ends[0]
            // Drained meanwhile, so the merge never waits on a full pipe.
            let reader = Task.detached { () -> Data in
                var data = Data()
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let count = read(readEnd, &buffer, buffer.count)
                    if count <= 0 { break }
                    data.append(contentsOf: buffer[..<count])
                }
                close(readEnd)
                return data
            }
            do {
                try await merge(answers, header: header, output: ends[1])
            } catch {
                close(ends[1])
                _ = await reader.value
                throw error
            }
            close(ends[1])
            return String(decoding: await reader.value, as: UTF8.self)
        }
        let path = NSTemporaryDirectory() + "berth-merge-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | (destination == .appendedFile ? O_APPEND : 0), 0o600)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        try await merge(answers, header: header, output: fd)
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    private func merge(_ answers: [Answer], header: Bool, output fd: Int32) async throws {
        let byUnit = Dictionary(uniqueKeysWithValues: zip(units, answers))
        let merger = CallMerger(units: Array(units.prefix(answers.count)), header: header, output: fd) { unit, _, receive in
            let answer = byUnit[unit]!
            for frame in answer.frames {
                if answer.delay > .zero { try await Task.sleep(for: answer.delay) }
                // Split every frame in two to cross piece boundaries.
                let bytes = frame.encoded()
                try bytes[..<(bytes.count / 2)].withUnsafeBytes { try receive($0) }
                try bytes[(bytes.count / 2)...].withUnsafeBytes { try receive($0) }
            }
            if let failure = answer.failure { throw CallError(message: failure) }
        }
        try await merger.run(script: "q.sh", arguments: [], split: true)
    }

    func lines(_ prefix: String, _ count: Int) -> [UnitFrame] {
        (1...count).map { .stdout(Array("\(prefix) \($0)\n".utf8)) }
    }

    @Test func outputsAreInUnitOrderEvenWhenTheSecondUnitFinishesFirst() async throws {
        // Unit 1 is slow: unit 2's whole answer is spooled meanwhile.
        let first = Answer(frames: lines("a", 20) + [.exit(0)], delay: .milliseconds(5))
        let second = Answer(frames: lines("b", 2000) + [.exit(0)])
        let text = try await merge([first, second])
        let expected = (1...20).map { "a \($0)\n" }.joined() + (1...2000).map { "b \($0)\n" }.joined()
        #expect(text == expected)
    }

    /// The second unit's output, spooled while the first prints, comes out whole and in order
    /// into a file, a file opened with `>>`, and a pipe.
    @Test(arguments: Destination.allCases)
    func spooledOutputArrivesWholeWhereverTheOutputGoes(destination: Destination) async throws {
        let first = Answer(frames: lines("a", 10) + [.exit(0)], delay: .milliseconds(5))
        let second = Answer(frames: lines("b", 20_000) + [.exit(0)])
        let text = try await merge([first, second], into: destination)
        let expected = (1...10).map { "a \($0)\n" }.joined() + (1...20_000).map { "b \($0)\n" }.joined()
        #expect(text == expected)
    }

    @Test func theHeaderIsPrintedOnceWhenTheUnitsAgree() async throws {
        let header = UnitFrame.stdout(Array("name\tcity\n".utf8))
        let text = try await merge([
            Answer(frames: [header] + lines("a", 3) + [.exit(0)], delay: .milliseconds(2)),
            Answer(frames: [header] + lines("b", 3) + [.exit(0)]),
        ], header: true)
        #expect(text == "name\tcity\na 1\na 2\na 3\nb 1\nb 2\nb 3\n")
    }

    @Test func aHeaderSplitOverFramesIsStillOneLine() async throws {
        let text = try await merge([
            Answer(frames: [.stdout(Array("na".utf8)), .stdout(Array("me\na 1\n".utf8)), .exit(0)]),
            Answer(frames: [.stdout(Array("name\nb 1\n".utf8)), .exit(0)]),
        ], header: true)
        #expect(text == "name\na 1\nb 1\n")
    }

    /// A first line without end is not held whole in memory as a header: its first 64 KiB are
    /// taken for the header and the rest is output.
    @Test func anEndlessFirstLineIsNotHeldWhole() async throws {
        let long = String(repeating: "x", count: 200_000)
        let text = try await merge([
            Answer(frames: [.stdout(Array((long + "\na 1\n").utf8)), .exit(0)]),
            Answer(frames: [.stdout(Array((long + "\nb 1\n").utf8)), .exit(0)]),
        ], header: true)
        let expected = long + "\na 1\n" + long.dropFirst(UnitOutput.longestHeader) + "\nb 1\n"
        let same = text == expected
        #expect(same, "\(text.count) characters, \(expected.count) expected; ends \(text.suffix(12).debugDescription)")
    }

    @Test func differingHeadersFailNamingTheUnit() async throws {
        do {
            _ = try await merge([
                Answer(frames: [.stdout(Array("name\n".utf8)), .exit(0)]),
                Answer(frames: [.stdout(Array("other\n".utf8)), .exit(0)]),
            ], header: true)
            Issue.record("the call succeeded")
        } catch let error as CallError {
            #expect(error.message.hasPrefix("unit 127.0.0.3:8282: its header differs"))
        }
    }

    @Test func aFailingUnitFailsTheCallWithItsStatusAndStderr() async throws {
        do {
            _ = try await merge([
                Answer(frames: lines("a", 2) + [.exit(0)]),
                Answer(frames: [.stderr(Array("no such city\n".utf8)), .exit(3)]),
            ])
            Issue.record("the call succeeded")
        } catch let error as CallError {
            #expect(error.message == "unit 127.0.0.3:8282: q.sh exited with status 3: no such city")
        }
    }

    @Test func aStreamThatEndsWithoutAnExitStatusIsAnError() async throws {
        do {
            _ = try await merge([Answer(frames: lines("a", 2))])
            Issue.record("the call succeeded")
        } catch let error as CallError {
            #expect(error.message == "unit 127.0.0.2:8281: the connection ended before q.sh finished")
        }
    }

    @Test func aFailureNamesTheUnitOnce() {
        let unit = units[0]
        let unreachable = ServiceError.unreachable(what: "unit \(unit)", reason: "connection refused")
        #expect(CallMerger.message(unreachable, unit: unit) == "unit 127.0.0.2:8281 is not reachable: connection refused")
        #expect(CallMerger.message(.refused(status: 404, message: "no script q.sh in /app/script"), unit: unit) == "unit 127.0.0.2:8281: no script q.sh in /app/script")
    }

    @Test func aBrokenConnectionNamesTheUnit() async throws {
        do {
            _ = try await merge([
                Answer(frames: lines("a", 1) + [.exit(0)]),
                Answer(frames: lines("b", 1), failure: "connection reset"),
            ])
            Issue.record("the call succeeded")
        } catch let error as CallError {
            #expect(error.message == "unit 127.0.0.3:8282: connection reset")
        }
    }
}
