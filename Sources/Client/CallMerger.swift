import BerthAPI
import BerthCLI
import BerthCore
import HTTPWire
import NIOTransport
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import Synchronization
import UnitProtocol

/// Starts the call on every unit at once and prints the outputs in unit order. The unit whose turn
/// it is prints as it streams; the others spool to an unlinked temporary file meanwhile, so every
/// unit runs at full speed and memory stays flat whatever the size of the output.
struct CallMerger {
    /// Where a unit's framed answer (see `UnitFrame`) goes, piece by piece as it arrives.
    typealias Receiver = @Sendable (UnsafeRawBufferPointer) throws -> Void
    /// Runs one unit's call, handing its answer to the receiver; returns when the answer has ended.
    typealias Source = @Sendable (HostPort, CallRequest, @escaping Receiver) async throws -> Void

    let units: [HostPort]
    let header: Bool
    let source: Source
    /// Where merged output and the units' errors go; standard output and error but in tests.
    var output: Int32 = STDOUT_FILENO
    var errors: Int32 = STDERR_FILENO
    /// How many units waiting their turn may stage their output in memory (`StageBudget`).
    var stages = 16

    init(units: [HostPort], header: Bool, output: Int32 = STDOUT_FILENO, errors: Int32 = STDERR_FILENO, source: @escaping Source) {
        self.units = units
        self.header = header
        self.output = output
        self.errors = errors
        self.source = source
    }

    /// Calls the session's units with its key, over TLS to each unit's own key where it has one.
    init(session: SessionFile, units: [HostPort], header: Bool) {
        self.init(units: units, header: header) { [secret = session.unitSecret] unit, request, receiver in
            let client = ServiceClient(address: unit, name: "unit \(unit)", tls: session.unitTLS(unit), transport: NIOTransport.self)
            try await client.receive("POST", UnitPath.call, body: request, token: secret, into: receiver)
        }
    }

    func run(script: String, arguments: [String], split: Bool) async throws {
        let budget = StageBudget(stages: stages)
        let outputs = units.map { _ in UnitOutput(destination: output, errors: errors, wantsHeader: header, stages: budget) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, unit) in units.enumerated() {
                let request = CallRequest(
                    script: script, arguments: arguments,
                    part: split ? index + 1 : nil, parts: split ? units.count : nil)
                group.addTask { [source] in
                    await outputs[index].read { receiver in try await source(unit, request, receiver) }
                }
            }
            defer { group.cancelAll() }
            try await printInOrder(outputs, script: script)
        }
    }

    private func printInOrder(_ outputs: [UnitOutput], script: String) async throws {
        var expectedHeader: [UInt8]?
        for (index, unit) in units.enumerated() {
            let unitOutput = outputs[index]
            if header {
                await unitOutput.waitForHeaderOrEnd()
                if let line = unitOutput.header {
                    if let expected = expectedHeader {
                        guard expected == line else {
                            throw CallError(message: "unit \(unit): its header differs from unit \(units[0])'s:\n  \(Self.line(line))\n  \(Self.line(expected))")
                        }
                    } else {
                        expectedHeader = line
                        try writeAll(output, line)
                    }
                }
            }
            try await unitOutput.printSpoolThenGoLive()
            await unitOutput.waitForEnd()
            // Ctrl-C ends the streams quietly; say so rather than blame the connection.
            try Task.checkCancellation()
            switch unitOutput.outcome {
            case .failed(let error as ServiceError):
                throw CallError(message: Self.message(error, unit: unit))
            case .failed(let error as CallError):
                throw CallError(message: "unit \(unit): \(error.message)")
            case .failed(let error):
                throw CallError(message: "unit \(unit): \(error)")
            case .running:
                throw CallError(message: "unit \(unit): the connection ended before \(script) finished")
            case .exited(0):
                continue
            case .exited(let status):
                let detail = String(decoding: unitOutput.stderrTail, as: UTF8.self).trimmed(\.isWhitespace)
                throw CallError(message: "unit \(unit): \(script) exited with status \(status)\(detail.isEmpty ? "" : ": \(detail)")")
            }
        }
    }

    private static func line(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).trimmed(\.isNewline)
    }

    /// What went wrong, naming the unit once.
    static func message(_ error: ServiceError, unit: HostPort) -> String {
        switch error {
        case .refused(401, _): "unit \(unit): refused: your session's key does not match (log in again)"
        case .refused(_, let message): "unit \(unit): \(message)"
        // These name the unit themselves ("unit … is not reachable: …").
        case .unreachable, .timeout, .invalidAnswer, .untrusted: error.description
        }
    }
}

/// One unit's answer on its way to the terminal: its header line, its standard output (printed
/// live on its turn, spooled before), the tail of its standard error and how it ended.
final class UnitOutput: @unchecked Sendable {
    enum Outcome {
        /// Still streaming, or the stream ended without an exit status.
        case running
        case exited(Int32)
        case failed(any Error)
    }

    private let destination: Int32
    private let errors: Int32
    private let lock = ThreadLock()
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// The first line so far, while it is being read; nil when complete or not wanted.
    private var partialHeader: [UInt8]?
    /// The most of a first line held as the header.
    static let longestHeader = 64 << 10
    private(set) var header: [UInt8]?
    /// Set once the spool is drained on this unit's turn: from then on output goes straight out.
    private var live = false
    private var spool: Int32 = -1
    private var spooled = 0
    /// Touched only by the thread handing over the answer, one piece at a time.
    private var decoder = UnitFrameDecoder()
    private var ended = false
    private(set) var outcome = Outcome.running
    private(set) var stderrTail: [UInt8] = []

    init(destination: Int32, errors: Int32, wantsHeader: Bool, stages: StageBudget) {
        self.destination = destination
        self.errors = errors
        self.stages = stages
        partialHeader = wantsHeader ? [] : nil
    }

    deinit {
        if spool >= 0 { close(spool) }
        staged?.deallocate()
    }

    // MARK: The reading side

    /// Runs the unit's call through `open`, which hands each piece of the answer to the receiver
    /// it is given, on the connection's own thread: every payload byte goes from the transport's
    /// buffer straight to the terminal or the spool.
    func read(_ open: (@escaping CallMerger.Receiver) async throws -> Void) async {
        do {
            try await open { [self] bytes in try receive(bytes) }
            end(nil)
        } catch {
            end(error)
        }
        // What came of a stderr frame the stream cut.
        if !stderrFrame.isEmpty { try? writeAll(errors, stderrFrame) }
    }

    private func receive(_ bytes: UnsafeRawBufferPointer) throws {
        try decoder.feed(bytes, pieces: { frame, endsFrame in
            // The exit status is the last frame: what comes after it is neither printed nor
            // allowed to change the status.
            guard !exitSeen else { throw CallError(message: "it sent more after the script's exit status") }
            switch frame {
            case .stdout(let payload):
                try take(payload)
            case .stderr(let payload):
                stderrTail.append(contentsOf: payload)
                if stderrTail.count > 4096 { stderrTail.removeFirst(stderrTail.count - 4096) }
                // Errors show at once, whoever's turn it is, each frame in one write (up to
                // 64 KiB), so that two units' lines do not mix mid-line.
                stderrFrame.append(contentsOf: payload)
                if endsFrame || stderrFrame.count >= 64 << 10 {
                    try? writeAll(errors, stderrFrame)
                    stderrFrame.removeAll(keepingCapacity: true)
                }
            case .exit(let status):
                exitSeen = true
                exited(status)
            }
        })
    }

    /// Touched only by the thread handing over the answer, as the decoder is.
    private var exitSeen = false
    private var stderrFrame: [UInt8] = []

    private func take(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes[...]
        lock.lock()
        if var pending = partialHeader {
            let room = Self.longestHeader - pending.count
            if let newline = rest.firstIndex(of: UInt8(ascii: "\n")), rest.distance(from: rest.startIndex, to: newline) < room {
                pending += rest[...newline]
                rest = rest[(newline + 1)...]
                header = pending
                partialHeader = nil
                wakeWaiters()
            } else if rest.count < room {
                pending += rest
                partialHeader = pending
                lock.unlock()
                return
            } else {
                // A first line longer than any header: its first part is taken for the header,
                // and the rest is output like any other, never held whole in memory.
                pending += rest.prefix(room)
                rest = rest.dropFirst(room)
                header = pending
                partialHeader = nil
                wakeWaiters()
            }
        }
        if rest.isEmpty { lock.unlock(); return }
        if live {
            lock.unlock()
            try writeAll(destination, UnsafeRawBufferPointer(rebasing: rest))
            return
        }
        defer { lock.unlock() }
        if staged == nil && stages.take() {
            staged = UnsafeMutableRawBufferPointer.allocate(byteCount: StageBudget.stageSize, alignment: 64)
        }
        guard let stage = staged else {
            // Every stage is taken by units waiting their turn: to the spool straight.
            return try spool(UnsafeRawBufferPointer(rebasing: rest))
        }
        var piece = UnsafeRawBufferPointer(rebasing: rest)
        while !piece.isEmpty {
            let taken = min(piece.count, stage.count - stagedCount)
            UnsafeMutableRawBufferPointer(rebasing: stage[stagedCount...]).copyMemory(from: UnsafeRawBufferPointer(rebasing: piece[..<taken]))
            stagedCount += taken
            piece = UnsafeRawBufferPointer(rebasing: piece[taken...])
            if stagedCount == stage.count {
                try spool(UnsafeRawBufferPointer(stage))
                stagedCount = 0
            }
        }
    }

    /// Output waiting its turn gathers here and goes to the spool a quarter megabyte at a time:
    /// writing to a file costs about as much for a piece of 64 KiB as for one of 256 KiB. Taken
    /// from the call's budget when the unit first waits, given back when its turn comes.
    private var staged: UnsafeMutableRawBufferPointer?
    private var stagedCount = 0
    private let stages: StageBudget

    /// Appends `bytes` to the spool; called with the lock held.
    private func spool(_ bytes: UnsafeRawBufferPointer) throws {
        if spool < 0 { spool = try Self.makeSpool() }
        var done = 0
        while done < bytes.count {
            let n = pwrite(spool, bytes.baseAddress! + done, bytes.count - done, off_t(spooled + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CallError(message: "cannot spool its output while an earlier unit prints: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        spooled += bytes.count
    }

    private func exited(_ status: Int32) {
        lock.lock()
        outcome = .exited(status)
        lock.unlock()
    }

    /// The stream is over; an error counts only when no exit status came first.
    private func end(_ error: (any Error)?) {
        lock.lock()
        if let error, case .running = outcome { outcome = .failed(error) }
        if let pending = partialHeader, !pending.isEmpty { header = pending }
        partialHeader = nil
        ended = true
        wakeWaiters()
        lock.unlock()
    }

    // MARK: The printing side

    func waitForHeaderOrEnd() async {
        await wait { $0.partialHeader == nil || $0.ended }
    }

    /// Copies what was spooled, in order, then what is staged, and lets the reader print
    /// straight out.
    func printSpoolThenGoLive() async throws {
        var offset = 0
        var buffer: [UInt8] = []
        while true {
            let caughtUp = offset
            let spooledSoFar: Int? = try lock.withLock {
                guard caughtUp == spooled else { return spooled }
                // The spool is out: what is staged follows it straight, the reader waiting on
                // the lock meanwhile, and from then on the reader prints.
                if let stage = staged {
                    try writeAll(destination, UnsafeRawBufferPointer(rebasing: stage[..<stagedCount]))
                    stage.deallocate()
                    staged = nil
                    stagedCount = 0
                    stages.give()
                }
                live = true
                return nil
            }
            guard let available = spooledSoFar else { return }
            while offset < available {
                if kernelCopies, try copyInKernel(from: offset, count: available - offset, advancing: &offset) { continue }
                if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: StageBudget.stageSize) }
                let n = buffer.withUnsafeMutableBytes { pread(spool, $0.baseAddress!, min($0.count, available - offset), off_t(offset)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw CallError(message: "cannot read back its spooled output: \(String(cString: strerror(errno)))") }
                try buffer.withUnsafeBytes { try writeAll(destination, UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                offset += n
            }
            try Task.checkCancellation()
        }
    }

    /// Whether the spool may still go out with `sendfile`: the kernel moves its pages to a file,
    /// a pipe or /dev/null without copying them through this process. An output that takes none
    /// (a file opened with `>>`) has every later piece go the plain way.
    private var kernelCopies = true

    /// Sends up to `count` spooled bytes from `offset` with `sendfile`; false when the output
    /// refuses it, and the caller reads and writes from `offset` on.
    private func copyInKernel(from offset: Int, count: Int, advancing position: inout Int) throws -> Bool {
        var from = off_t(offset)
        let sent = sendfile(destination, spool, &from, min(count, 1 << 30))
        if sent > 0 {
            position = Int(from)
            return true
        }
        guard sent < 0 else { throw CallError(message: "cannot read back its spooled output: it ended early") }
        let error = errno
        if writeMayGoOn(to: destination, after: error) { return true }
        guard [EINVAL, ENOSYS, EOPNOTSUPP].contains(error) else {
            throw CallError(message: "cannot write the output: \(String(cString: strerror(error)))")
        }
        kernelCopies = false
        return false
    }

    func waitForEnd() async {
        await wait { $0.ended }
    }

    private func wait(until condition: @escaping (UnitOutput) -> Bool) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if condition(self) {
                lock.unlock()
                continuation.resume()
            } else {
                waiters.append(continuation)
                lock.unlock()
            }
        }
    }

    /// Called with the lock held: waiters check their condition again.
    private func wakeWaiters() {
        let woken = waiters
        waiters = []
        for waiter in woken { waiter.resume() }
    }

    private static func makeSpool() throws -> Int32 {
        let directory = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array("\(directory)/berth-call-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { buffer in
            let fd = mkstemp(buffer.baseAddress!)
            // Unlinked at once: the space goes back when the call ends, however it ends.
            if fd >= 0 { unlink(buffer.baseAddress!) }
            return fd
        }
        guard fd >= 0 else {
            throw CallError(message: "cannot create a spool file in \(directory) for output waiting its turn: \(String(cString: strerror(errno)))")
        }
        return fd
    }
}

/// The staging buffers of one call's units waiting their turn: a few, so that a call on many
/// units holds a few megabytes at most while they wait.
final class StageBudget: Sendable {
    static let stageSize = 256 << 10
    private let left: Mutex<Int>

    init(stages: Int) {
        left = Mutex(stages)
    }

    /// Whether a stage may be made.
    func take() -> Bool {
        left.withLock { left in
            guard left > 0 else { return false }
            left -= 1
            return true
        }
    }

    func give() {
        left.withLock { $0 += 1 }
    }
}

/// Writes every byte, retrying short writes; a pipe whose reader has gone ends the process.
func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws {
    if let reason = writeEvery(byteOf: buffer, to: fd) { throw CallError(message: "cannot write the output: \(reason)") }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try writeAll(fd, $0) }
}
