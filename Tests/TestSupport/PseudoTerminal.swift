import Foundation

/// A pseudo-terminal pair: a program runs on its secondary side as on a user's terminal, and the
/// test types and reads on the primary side.
public final class PseudoTerminal: @unchecked Sendable {
    public let primary: Int32
    public let secondary: Int32
    public private(set) var transcript = ""

    public init(rows: Int, columns: Int) throws {
        // posix_openpt and its kin by hand, as Linux does them: Swift's Glibc leaves them out.
        primary = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0, number: UInt32 = 0
        let setLock: UInt = 0x4004_5431, getNumber: UInt = 0x8004_5430  // TIOCSPTLCK, TIOCGPTN
        guard primary >= 0, ioctl(primary, setLock, &unlock) == 0, ioctl(primary, getNumber, &number) == 0 else {
            throw PseudoTerminal.Failure("no pseudo-terminal")
        }
        secondary = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        guard secondary >= 0 else { throw PseudoTerminal.Failure("cannot open /dev/pts/\(number)") }
        _ = fcntl(primary, F_SETFL, fcntl(primary, F_GETFL) | O_NONBLOCK)
        resize(rows: rows, columns: columns)
    }

    deinit {
        close(primary)
        close(secondary)
    }

    public func resize(rows: Int, columns: Int) {
        var size = winsize(ws_row: UInt16(rows), ws_col: UInt16(columns), ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(primary, UInt(TIOCSWINSZ), &size)
    }

    /// The terminal's line settings, to compare before and after.
    public func settings() -> [UInt32] {
        var settings = termios()
        tcgetattr(secondary, &settings)
        return [settings.c_iflag, settings.c_oflag, settings.c_cflag, settings.c_lflag]
    }

    public func run(_ path: String, _ arguments: [String], environment: [String: String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = FileHandle(fileDescriptor: secondary, closeOnDealloc: false)
        process.standardInput = handle
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    public func type(_ text: String) throws {
        let written = text.withCString { write(primary, $0, strlen($0)) }
        guard written == text.utf8.count else { throw PseudoTerminal.Failure("cannot type on the terminal") }
    }

    /// Reads what the terminal shows until `text` appears (true) or 20 s pass (false).
    public func read(until text: String) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            let count = Glibc.read(primary, &buffer, buffer.count)
            if count > 0 {
                transcript += String(decoding: buffer[0..<count], as: UTF8.self)
                if transcript.contains(text) { return true }
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        return false
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Reads and drops whatever the terminal has shown and is not yet read.
    public func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Glibc.read(primary, &buffer, buffer.count) > 0 {}
    }

    /// Reads what the terminal shows until the byte `byte` appears, without sleeping: for timing
    /// a keystroke's round trip. False after `timeout`.
    public func awaitByte(_ byte: UInt8, timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 256)
        while ContinuousClock.now < deadline {
            var entry = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { continue }
            let count = Glibc.read(primary, &buffer, buffer.count)
            if count > 0, buffer[0..<count].contains(byte) { return true }
        }
        return false
    }
}
