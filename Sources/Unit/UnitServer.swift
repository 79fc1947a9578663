#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HTTPWire
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import UnitProtocol

/// What a unit needs to know: its port, the session's secret, where scripts live, its limits.
struct UnitSettings: Sendable {
    var port = 0
    var secret: String?
    var scriptDirectory = "/app/script"
    var workingDirectory = "/app"
    var maxCalls = 4
    var callTimeoutSeconds = 3600
    var user = "unknown"

    /// Defaults from the environment the agent gives the container, then the command line.
    static func parse(_ arguments: [String], environment: [String: String]) throws(UnitError) -> UnitSettings {
        var settings = UnitSettings()
        settings.secret = environment["BERTH_UNIT_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        settings.user = environment["BERTH_USER"] ?? "unknown"
        // Two calls per 512 CPU shares (Docker's default is 1024), at least one, at most 64.
        if let shares = environment["BERTH_CPU_SHARES"].flatMap(Int.init) {
            settings.maxCalls = max(1, min(64, shares / 256))
        }
        var rest = arguments.dropFirst()
        guard rest.first == "serve" else { throw UnitError(2, usage) }
        rest = rest.dropFirst()
        while let option = rest.popFirst() {
            guard let value = rest.popFirst() else { throw UnitError(2, "\(option) needs a value\n\(usage)") }
            switch option {
            case "--port": settings.port = Int(value) ?? 0
            case "--max-calls": settings.maxCalls = Int(value) ?? 0
            case "--call-timeout": settings.callTimeoutSeconds = Int(value) ?? 0
            case "--script-dir": settings.scriptDirectory = value
            case "--work-dir": settings.workingDirectory = value
            default: throw UnitError(2, "unknown option \(option)\n\(usage)")
            }
        }
        guard (1...65535).contains(settings.port) else { throw UnitError(2, "--port must be 1...65535\n\(usage)") }
        guard settings.maxCalls >= 1, settings.callTimeoutSeconds >= 1 else { throw UnitError(2, "--max-calls and --call-timeout must be positive") }
        return settings
    }

    static let usage = """
        usage: berth-unit serve --port PORT [--max-calls N] [--call-timeout SECONDS] [--script-dir DIR] [--work-dir DIR]
          Serves one Berth unit: POST /call runs DIR/<script> for the session's owner (BERTH_UNIT_SECRET).
        """
}

/// The unit's state shared by all connections: running calls and the shutdown flag.
final class UnitState: Sendable {
    let settings: UnitSettings
    private let running = Atomic<Int>(0)
    /// The runs under way, by process id, to stop them all at shutdown.
    private let active = Mutex<[Int32: ScriptRun]>([:])

    init(settings: UnitSettings) {
        self.settings = settings
    }

    /// Takes a call slot, or nil when all are busy.
    func admit() -> Bool {
        while true {
            let current = running.load(ordering: .relaxed)
            if current >= settings.maxCalls { return false }
            if running.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing).exchanged { return true }
        }
    }

    func track(_ run: ScriptRun) { active.withLock { $0[run.pid] = run } }

    func finish(_ run: ScriptRun) {
        active.withLock { $0[run.pid] = nil }
        running.subtract(1, ordering: .relaxed)
    }

    func release() { running.subtract(1, ordering: .relaxed) }

    var runningCount: Int { running.load(ordering: .relaxed) }

    func cancelAll() { active.withLock { for run in $0.values { run.cancel() } } }
}

/// Counts open connections (`ConnectionPlaces`, one group): when all are taken, a new one takes
/// the place of the oldest that has not shown the session's key. Anyone who reaches the unit's
/// port can open connections, and through Docker's port proxy every client shares one address,
/// so none can be told apart but by that key, and strangers holding every place must not keep the
/// owner's calls out.
final class ConnectionCap: Sendable {
    let limit: Int
    private let places: Mutex<ConnectionPlaces<ObjectIdentifier, any Channel>>

    init(limit: Int) {
        self.limit = limit
        places = Mutex(ConnectionPlaces(total: limit, perGroup: limit))
    }

    func admit(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let (admitted, gaveWay) = places.withLock { $0.admit(id, holder: channel, group: "") }
        gaveWay?.close(promise: nil)
        guard admitted else { return false }
        channel.closeFuture.whenComplete { [self] _ in places.withLock { $0.release(id, group: "") } }
        return true
    }

    /// The connection showed the session's key: it keeps its place.
    func owned(_ channel: any Channel) {
        places.withLock { $0.trust(ObjectIdentifier(channel), group: "") }
    }
}

/// One HTTP connection: routes `/health` and `/call`.
/// - A call's `Authorization` is checked on the request's head: no one else gets a byte of a
///   body stored, only one error line and a closed connection.
/// - Slow senders are cut off: the head must arrive within `deadline` of the connection's start
///   (or of the last answer), the body within `deadline` of the head.
final class UnitHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: UnitState
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var currentRun: ScriptRun?
    /// Whether the client wants the connection kept after this response.
    private var keepAlive = true
    /// Set once the request was answered before its body was read: the rest of it is ignored
    /// and the connection closes after the answer.
    private var refused = false
    private var timer: Scheduled<Void>?
    /// A call's body: the script's name and arguments, which must fit on a command line.
    static let maxBody = 1 << 20
    static let deadline = TimeAmount.seconds(10)

    private let connections: ConnectionCap?

    init(state: UnitState, connections: ConnectionCap? = nil) {
        self.state = state
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armDeadline(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            guard !refused else { return }
            // Only the owner's calls keep their connection: anyone else's ends with its answer, so
            // strangers cannot sit on the unit's few connections with requests every few seconds.
            keepAlive = requestHead.isKeepAlive && requestHead.method == .POST
            if let problem = admissionProblem(requestHead) {
                refused = true
                timer?.cancel()
                keepAlive = false
                respond(context, problem.status, problem.message)
                return
            }
            // Only a call passes with the session's key: the connection keeps its place.
            if requestHead.method == .POST { connections?.owned(context.channel) }
            head = requestHead
            body.clear()
            armDeadline(context)
        case .body(var chunk):
            guard !refused, head != nil else { return }
            if body.readableBytes + chunk.readableBytes > Self.maxBody {
                refused = true
                head = nil
                timer?.cancel()
                keepAlive = false
                respond(context, 413, "request body is larger than \(Self.maxBody >> 20) MiB")
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard !refused, let requestHead = head else { return }
            head = nil
            timer?.cancel()
            route(context, requestHead)
            // The next request starts from an empty buffer, not one sized for this body.
            body = ByteBuffer()
        }
    }

    /// Closes the connection unless a request head (or its body) arrives in time.
    private func armDeadline(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: Self.deadline) { channel.close(promise: nil) }
    }

    /// Why the request is refused before its body is read: an unknown path, or a call without
    /// the session's secret.
    private func admissionProblem(_ head: HTTPRequestHead) -> UnitError? {
        switch (head.method, head.uri) {
        case (.GET, UnitPath.health):
            // A health check has no body: none is stored for a stranger.
            let length = head.headers.first(name: "content-length").flatMap(Int.init) ?? 0
            guard length == 0, !head.headers.contains(name: "transfer-encoding") else {
                return UnitError(400, "a health check takes no body")
            }
            return nil
        case (.POST, UnitPath.call):
            guard let secret = state.settings.secret else { return UnitError(403, "this unit has no session secret; it accepts no calls") }
            guard UnitAuthorization.admits(head.headers.first(name: "authorization"), secret: secret) else {
                return UnitError(401, "not the owner of this unit's session")
            }
            return nil
        default:
            return UnitError(404, "no such path: \(head.uri)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The caller went away (Ctrl-C): stop its script.
        currentRun?.cancel()
        context.fireChannelInactive()
    }

    private func route(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard head.method == .POST else { return respond(context, 200, "ok") }
        do {
            try startCall(context, head)
        } catch {
            respond(context, error.status, error.message)
        }
    }

    private func startCall(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) throws(UnitError) {
        let request: CallRequest
        do {
            request = try JSONDecoder().decode(CallRequest.self, from: Data(body.readableBytesView))
        } catch {
            throw UnitError(400, "request body is not a call")
        }
        let script = try resolve(request.script)
        guard state.admit() else {
            throw UnitError(503, "unit busy: \(state.settings.maxCalls) calls already running")
        }
        var environment = [
            "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=\(state.settings.workingDirectory)",
            "BERTH_USER=\(state.settings.user)", "LANG=C.UTF-8",
        ]
        if let part = request.part, let parts = request.parts {
            environment += ["BERTH_PART=\(part)", "BERTH_PARTS=\(parts)"]
        }
        let run: ScriptRun
        do {
            run = try ScriptRun.start(
                script: script, arguments: request.arguments, environment: environment,
                workingDirectory: state.settings.workingDirectory)
        } catch {
            state.release()
            throw error
        }
        state.track(run)
        currentRun = run
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/vnd.berth.frames")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)

        let channel = context.channel
        let settings = state.settings
        let state = self.state
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let started = monotonicSeconds()
        startThread {
            let sender = FrameSender(channel: channel)
            let status = run.pump(timeoutSeconds: settings.callTimeoutSeconds) { stream, fd in
                sender.forward(stream, readingFrom: fd)
            }
            if status == 124 && !run.isCancelled {
                _ = sender.send(.stderr(Array("berth-unit: \(request.script) timed out after \(settings.callTimeoutSeconds) s\n".utf8)))
            }
            _ = sender.send(.exit(status))
            _ = sender.drain()
            channel.eventLoop.execute {
                let handler = loopBound.value
                handler.currentRun = nil
                let done = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
                if handler.keepAlive {
                    handler.timer = channel.eventLoop.scheduleTask(in: Self.deadline) { channel.close(promise: nil) }
                } else {
                    done.whenComplete { _ in channel.close(promise: nil) }
                }
            }
            state.finish(run)
            let seconds = monotonicSeconds() - started
            let part = request.part.map { " part \($0)/\(request.parts ?? 0)" } ?? ""
            logLine("call \(request.script) \(request.arguments)\(part) exit \(status) in \(formatSeconds(seconds))\(run.isCancelled ? " (cancelled by the caller)" : "")")
        }
    }


    /// The script's real path, which must lie inside the script directory.
    private func resolve(_ name: String) throws(UnitError) -> String {
        if let problem = ScriptName.problem(with: name) { throw UnitError(400, problem) }
        let directory = state.settings.scriptDirectory
        guard let root = realPath(directory) else { throw UnitError(404, "\(directory) does not exist") }
        guard let path = realPath(directory + "/" + name) else { throw UnitError(404, "no script \(name) in \(directory)") }
        guard path.hasPrefix(root + "/") else { throw UnitError(403, "script \(name) resolves outside \(directory)") }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw UnitError(400, "\(name) is not a file") }
        return path
    }

    /// Answers with `{"error": …}` like the other Berth daemons (or `{"status": "ok"}`).
    private func respond(_ context: ChannelHandlerContext, _ status: Int, _ message: String) {
        struct Answer: Encodable { var error: String?; var status: String? }
        var headers = HTTPHeaders()
        let answer = status < 400 ? Answer(status: message) : Answer(error: message)
        let body = Array((try? JSONEncoder().encode(answer)) ?? Data()) + [10]
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(body.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let responseHead = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if keepAlive {
            armDeadline(context)
        } else {
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

func formatSeconds(_ seconds: Double) -> String {
    let milliseconds = Int(seconds * 1000)
    return "\(milliseconds / 1000).\(String(milliseconds % 1000).leftPadded(to: 3)) s"
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// One line to stdout, so `berth logs` shows the unit's history.
func logLine(_ text: String) {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var parts = tm()
    var seconds = now.tv_sec
    gmtime_r(&seconds, &parts)
    let stamp = "\(parts.tm_year + 1900)-\(String(parts.tm_mon + 1).leftPadded(to: 2))-\(String(parts.tm_mday).leftPadded(to: 2))T\(String(parts.tm_hour).leftPadded(to: 2)):\(String(parts.tm_min).leftPadded(to: 2)):\(String(parts.tm_sec).leftPadded(to: 2))Z"
    // One write per line, unbuffered: the log is a pipe, and lines must not wait for a buffer.
    let line = Array("\(stamp) \(text)\n".utf8)
    _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Writes a call's frames from the thread that reads the script's output, one frame in flight
/// behind the one being written: the next chunk is read while the last is encrypted and sent,
/// and a slow reader still slows the script. A pipe is read straight into the frame after its
/// header, in two buffers taken in turn, so output is copied once on its way to the socket.
final class FrameSender {
    /// The most one read of a pipe takes into a frame.
    static let chunk = 256 << 10
    private let channel: any Channel
    private var previous: EventLoopFuture<Void>?
    private var buffers: [ByteBuffer]
    private var next = 0

    init(channel: any Channel) {
        self.channel = channel
        buffers = []
    }

    /// Reads once from `fd`, sends what came as one frame of `stream`, and waits until the frame
    /// before it is on its way.
    func forward(_ stream: UnitStream, readingFrom fd: Int32) -> PumpStep {
        if buffers.count < 2 { buffers.append(channel.allocator.buffer(capacity: 8 + Self.chunk)) }
        let index = next
        next = 1 - next
        // The buffer's last frame went out before the frame after it was queued; a buffer still
        // referenced by the channel would be copied here, never overwritten.
        buffers[index].clear()
        buffers[index].writeBytes(UnitFrame.header(kind: stream.rawValue, size: 0))
        var count = 0
        var failure: Int32 = 0
        buffers[index].writeWithUnsafeMutableBytes(minimumWritableBytes: Self.chunk) { space in
            count = read(fd, space.baseAddress, Self.chunk)
            failure = errno
            return max(count, 0)
        }
        if count < 0 && (failure == EINTR || failure == EAGAIN) { return .sent }
        guard count > 0 else { return .ended }
        buffers[index].setBytes(UnitFrame.header(kind: stream.rawValue, size: count), at: buffers[index].readerIndex)
        return send(buffers[index]) ? .sent : .gone
    }

    /// Queues `frame` and waits until the one before it is on its way; false once the
    /// connection is gone.
    func send(_ frame: UnitFrame) -> Bool {
        send(channel.allocator.buffer(bytes: frame.encoded()))
    }

    private func send(_ bytes: ByteBuffer) -> Bool {
        let written = channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(bytes)))
        defer { previous = written }
        return drain()
    }

    /// Waits until every frame is on its way.
    func drain() -> Bool {
        do {
            try previous?.wait()
            previous = nil
            return true
        } catch {
            return false
        }
    }
}
