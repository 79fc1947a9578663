#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import UnitProtocol

/// One running script: spawned in its own process group with stdout and stderr on pipes, read by
/// a thread of its own, stopped as a group on timeout, cancellation or shutdown.
final class ScriptRun: @unchecked Sendable {
    let pid: pid_t
    private let stdoutFD: Int32
    private let stderrFD: Int32
    private let cancelled = Atomic(false)

    private init(pid: pid_t, stdoutFD: Int32, stderrFD: Int32) {
        self.pid = pid
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc
    /// module does not declare.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Starts `/bin/sh` running the script with `arguments` in `workingDirectory`. A script without
    /// its executable bit runs under `sh` anyway: users copy files in and forget `chmod`.
    static func start(script: String, arguments: [String], environment: [String], workingDirectory: String) throws(UnitError) -> ScriptRun {
        let launcher = #"cd "$1" || exit 126; shift; if [ -x "$0" ]; then exec "$0" "$@"; else exec /bin/sh "$0" "$@"; fi"#
        let argv = ["/bin/sh", "-c", launcher, script, workingDirectory] + arguments
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw UnitError(500, "cannot create pipes: \(errnoText())") }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // Nothing else of berth-unit's reaches the script: not the listening socket, not other
        // connections, not the pipes of the owner's other calls running at the same time.
        guard let closeFrom = Self.closeFrom, closeFrom(&actions, 3) == 0 else {
            for fd in outPipe + errPipe { close(fd) }
            throw UnitError(500, "cannot keep berth-unit's descriptors from the script (glibc 2.34 or later is needed)")
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, cArguments, cEnvironment)
        close(outPipe[1])
        close(errPipe[1])
        // A pipe of 256 KB rather than 64 KB lets one read take a whole frame of output written
        // in pieces: a quarter of the frames, and of the hand-offs to the event loop (a 50 MB call
        // 1.3 times as fast; 1 MB was no faster). Refused once the user's pipes hold their share
        // of the kernel's memory (pipe-user-pages-soft); 64 KB then.
        _ = fcntl(outPipe[0], 1031 /* F_SETPIPE_SZ */, Int32(FrameSender.chunk))
        guard result == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw UnitError(500, "cannot start /bin/sh: \(String(cString: strerror(result)))")
        }
        return ScriptRun(pid: pid, stdoutFD: outPipe[0], stderrFD: errPipe[0])
    }

    /// Reads both pipes until they close: `forward` reads once from the ready pipe and sends what
    /// it read (it may block: that is the back-pressure). Then reaps the process and returns the
    /// exit status; 124 after `timeout`.
    func pump(timeoutSeconds: Int, forward: (UnitStream, Int32) -> PumpStep) -> Int32 {
        var descriptors = [pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0), pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)]
        var open = 2
        let deadline = monotonicSeconds() + Double(timeoutSeconds)
        var timedOut = false
        while open > 0 {
            if isCancelled { break }
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 {
                timedOut = true
                break
            }
            let ready = poll(&descriptors, 2, Int32(min(remaining, 0.5) * 1000))
            if ready <= 0 { continue }
            for index in 0..<2 where descriptors[index].fd >= 0 && descriptors[index].revents != 0 {
                switch forward(index == 0 ? .stdout : .stderr, descriptors[index].fd) {
                case .sent:
                    continue
                case .ended:
                    close(descriptors[index].fd)
                    descriptors[index].fd = -1
                    open -= 1
                case .gone:
                    cancel()
                }
            }
        }
        for descriptor in descriptors where descriptor.fd >= 0 { close(descriptor.fd) }
        if timedOut || isCancelled { stopGroup() }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if timedOut { return 124 }
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    var isCancelled: Bool { cancelled.load(ordering: .acquiring) }

    /// Stops the run (the client went away, or the unit is shutting down).
    func cancel() {
        cancelled.store(true, ordering: .releasing)
    }

    /// SIGTERM to the whole group, SIGKILL a moment later for whatever is left.
    private func stopGroup() {
        kill(-pid, SIGTERM)
        for _ in 0..<20 {
            if kill(-pid, 0) != 0 { return }
            usleep(50_000)
        }
        kill(-pid, SIGKILL)
    }
}

/// Which of the script's outputs a pipe carries: the kind of frame its output goes in.
enum UnitStream: UInt8 {
    case stdout = 1
    case stderr = 2
}

/// What one read of a pipe came to.
enum PumpStep {
    /// Read and sent (or nothing read, on a signal): poll again.
    case sent
    /// The pipe is closed at the script's end.
    case ended
    /// The connection is gone: stop the script.
    case gone
}

/// A refusal with its HTTP status.
struct UnitError: Error {
    let status: Int
    let message: String

    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Runs `body` on a new detached thread: a call's pump blocks, so it gets a thread of its own.
func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    pthread_detach(thread)
}

/// One `error: …` line on stderr.
func writeError(_ message: String) {
    let line = Array("error: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
