import BerthAPI
import BerthCore
import Foundation
import Testing
import UnitProtocol
@testable import Client

/// The merge of `berth call` without a network: each unit's answer is a scripted stream of frames.
@Suite struct CallMergerTests {
    let units = [HostPort(host: "127.0.0.2", port: 8281), HostPort(host: "127.0.0.3", port: 8282), HostPort(host: "127.0.0.4", port: 8283)]

    /// One unit's answer: frames, sent in pieces, after an optional delay before each.
    struct Answer: Sendable {
        var frames: [UnitFrame]
        var delay: Duration = .zero
        var failure: String?
        /// A pause between the two halves of each frame, so that the units' halves interleave.
        var pauseInsideFrames: Duration = .zero
        /// The connection ends halfway through the last frame.
        var cutInLastFrame = false
    }

    /// Where the merged output goes: each takes the spool back its own way (the kernel's copy,
    /// or read and written when the output refuses it, as a file opened for appending does).
    enum Destination: CaseIterable { case file, appendedFile, pipe, nonBlockingPipe }

    func merge(_ answers: [Answer], header: Bool = false, into destination: Destination = .file) async throws -> String {
        if destination == .pipe || destination == .nonBlockingPipe {
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            let readEnd = ends[0]
            // Left non-blocking by whoever started the command: a full pipe refuses a write
            // (EAGAIN) rather than wait.
            if destination == .nonBlockingPipe { _ = fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK) }
            let slowly = destination == .nonBlockingPipe
            // Drained meanwhile (after a pause that lets the pipe fill, when non-blocking), on a
            // thread of its own: blocking reads on Swift's pool, one thread per core, could hold
            // the thread the merge needs to go on.
            let drained = PipeDrain(readEnd, pausingFirst: slowly)
            do {
                try await merge(answers, header: header, output: ends[1])
            } catch {
                close(ends[1])
                _ = drained.wait()
                throw error
            }
            close(ends[1])
            return String(decoding: drained.wait(), as: UTF8.self)
        }
        let path = NSTemporaryDirectory() + "berth-merge-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | (destination == .appendedFile ? O_APPEND : 0), 0o600)
        #expect(fd >= 0)
        defer { close(fd); unlink(path) }
        try await merge(answers, header: header, output: fd)
        return try String(contentsOfFile: path, encoding: .utf8)
    }

    private func merge(_ answers: [Answer], header: Bool, output fd: Int32, errors: Int32 = STDERR_FILENO, stages: Int = 16) async throws {
        let byUnit = Dictionary(uniqueKeysWithValues: zip(units, answers))
        var merger = CallMerger(units: Array(units.prefix(answers.count)), header: header, output: fd, errors: errors) { unit, _, receive in
            let answer = byUnit[unit]!
            for (index, frame) in answer.frames.enumerated() {
                if answer.delay > .zero { try await Task.sleep(for: answer.delay) }
                // Split every frame in two to cross piece boundaries.
                let bytes = frame.encoded()
                try bytes[..<(bytes.count / 2)].withUnsafeBytes { try receive($0) }
                if answer.cutInLastFrame && index == answer.frames.count - 1 { return }
                if answer.pauseInsideFrames > .zero { try await Task.sleep(for: answer.pauseInsideFrames) }
                try bytes[(bytes.count / 2)...].withUnsafeBytes { try receive($0) }
            }
            if let failure = answer.failure { throw CallError(message: failure) }
        }
        merger.stages = stages
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

    /// Units waiting their turn beyond the call's staging buffers spool straight; all come out
    /// in order.
    @Test func unitsWaitingBeyondTheStagingBuffersSpoolStraight() async throws {
        let path = NSTemporaryDirectory() + "berth-merge-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd); unlink(path) }
        let first = Answer(frames: lines("a", 10) + [.exit(0)], delay: .milliseconds(5))
        try await merge([first, Answer(frames: lines("b", 30_000) + [.exit(0)]), Answer(frames: lines("c", 30_000) + [.exit(0)])], header: false, output: fd, stages: 1)
        let expected = ["a", "b", "c"].map { letter in (1...(letter == "a" ? 10 : 30_000)).map { "\(letter) \($0)\n" }.joined() }.joined()
        #expect(try String(contentsOfFile: path, encoding: .utf8) == expected)
    }

    /// Each unit's stderr frame goes out in one write, whoever else writes meanwhile: two
    /// units' lines never mix mid-line.
    @Test func stderrLinesOfTwoUnitsDoNotMix() async throws {
        let path = NSTemporaryDirectory() + "berth-merge-errors-\(UUID().uuidString)"
        let errors = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        #expect(errors >= 0)
        defer { close(errors); unlink(path) }
        func noisy(_ letter: String) -> Answer {
            let line = UnitFrame.stderr(Array((String(repeating: letter, count: 40) + "\n").utf8))
            return Answer(frames: Array(repeating: line, count: 20) + [.exit(0)], pauseInsideFrames: .milliseconds(1))
        }
        let out = NSTemporaryDirectory() + "berth-merge-\(UUID().uuidString)"
        let fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd); unlink(out) }
        try await merge([noisy("a"), noisy("b")], header: false, output: fd, errors: errors)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 40)
        for line in lines { #expect(line == String(repeating: "a", count: 40) || line == String(repeating: "b", count: 40), "\(line)") }
    }

    /// What came of a frame the connection cut is printed, as it came, and the call fails
    /// naming the unit.
    @Test func aFrameCutByTheConnectionEndsTheCallWithItsUnitNamed() async throws {
        let path = NSTemporaryDirectory() + "berth-merge-\(UUID().uuidString)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd); unlink(path) }
        do {
            try await merge([Answer(frames: lines("a", 2) + [.stdout(Array("partial line\n".utf8))], cutInLastFrame: true)], header: false, output: fd)
            Issue.record("the call succeeded")
        } catch let error as CallError {
            #expect(error.message == "unit 127.0.0.2:8281: the connection ended before q.sh finished")
        }
        // The last frame is cut after 10 of its 21 bytes: its header and "pa".
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "a 1\na 2\npa")
    }

    /// The exit status is the last frame: what a unit sends after it is not printed and does
    /// not change the status.
    @Test func framesAfterTheExitStatusAreNotPrintedNorCounted() async throws {
        let text = try await merge([Answer(frames: lines("a", 2) + [.exit(0), .stdout(Array("late\n".utf8)), .exit(7)])])
        #expect(text == "a 1\na 2\n")
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

/// Reads a pipe to its end on a thread of its own.
final class PipeDrain: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var data = Data()

    init(_ descriptor: Int32, pausingFirst: Bool) {
        let thread = Thread { [self] in
            if pausingFirst { usleep(100_000) }
            data = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true).readDataToEndOfFile()
            done.signal()
        }
        thread.start()
    }

    /// All that was read, once the pipe's writer has closed it.
    func wait() -> Data {
        done.wait()
        return data
    }
}
