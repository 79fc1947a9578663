import CCurl
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A connection that HTTP hands over after one request: from then on raw bytes both ways. The
/// engine answers an attached exec so (`Upgrade: tcp`, then `101 UPGRADED`): the process's stdin
/// goes in, its output comes out, for as long as the process runs.
///
/// libcurl connects (Unix socket, TCP or TLS, exactly as for any request) and is then only asked
/// to carry bytes (`CURLOPT_CONNECT_ONLY`). A thread of the connection's own moves them, so
/// neither Swift's pool nor an event loop ever waits on the socket; a reader that falls behind
/// by `window` bytes stops the reading, so a fast process cannot fill memory.
public final class UpgradedConnection: Sendable {
    public let head: HTTPResponseHead
    /// What the peer sends after the head, as it comes; ends when the peer closes.
    public let output: Output
    private let pump: Pump

    fileprivate init(head: HTTPResponseHead, pump: Pump) {
        self.head = head
        self.pump = pump
        self.output = Output(pump: pump)
    }

    deinit { pump.close() }

    /// Sends `data`, returning once it is on its way (back-pressure: a peer that reads slowly
    /// slows the writer). Throws once the connection has ended.
    public func write(_ data: Data) async throws {
        guard !data.isEmpty else { return }
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            pump.enqueue(.bytes(data, done))
        }
    }

    /// Ends the sending side once everything written is sent (the peer reads end of file), while
    /// output keeps coming. Over TLS the sending side cannot end alone, and stays open.
    public func closeWrite() async throws {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            pump.enqueue(.closeWrite(done))
        }
    }

    /// Ends the connection at once; the output ends too.
    public func close() {
        pump.close()
    }

    /// The peer's bytes. One reader at a time.
    public struct Output: AsyncSequence, Sendable {
        public typealias Element = Data
        fileprivate let pump: Pump

        public func makeAsyncIterator() -> Iterator {
            Iterator(pump: pump, base: pump.stream.makeAsyncIterator())
        }

        public struct Iterator: AsyncIteratorProtocol {
            fileprivate let pump: Pump
            fileprivate var base: AsyncThrowingStream<Data, any Error>.AsyncIterator

            public mutating func next() async throws -> Data? {
                let chunk = try await base.next()
                if let chunk { pump.consumed(chunk.count) }
                return chunk
            }
        }
    }
}

extension Transport {
    /// Sends `request` on a connection of its own and, once the answer's head says the server
    /// takes the connection over (`101`, or a `200` with a raw stream, as the engine answers
    /// without `Upgrade`), hands the connection over. Any other status fails with the answer.
    /// `request.timeout` (else the connect timeout) bounds the time to the head; the connection
    /// then lasts until either side ends it.
    public func upgrade(_ request: HTTPRequest) async throws -> UpgradedConnection {
        let pump = Pump(request: request, endpoint: endpoint, connectTimeout: connectTimeout, window: streamWindow)
        let head = try await withCheckedThrowingContinuation { (opened: CheckedContinuation<HTTPResponseHead, any Error>) in
            pump.start(opened)
        }
        return UpgradedConnection(head: head, pump: pump)
    }
}

/// The thread and libcurl handle behind an `UpgradedConnection`.
private final class Pump: @unchecked Sendable {
    enum Command {
        case bytes(Data, CheckedContinuation<Void, any Error>)
        case closeWrite(CheckedContinuation<Void, any Error>)
    }

    private struct State {
        var commands: [Command] = []
        /// Bytes yielded to the reader and not yet taken.
        var unread = 0
        var closing = false
        var ended = false
    }

    let stream: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    private let request: HTTPRequest
    private let endpoint: HTTPEndpoint
    private let connectTimeout: Duration
    private let window: Int
    private let state = Mutex(State())
    /// A pipe that wakes the thread from `poll` when there is something to write, room to read,
    /// or an end: its reading and writing ends.
    private let wake: Int32
    private let waker: Int32

    init(request: HTTPRequest, endpoint: HTTPEndpoint, connectTimeout: Duration, window: Int) {
        self.request = request
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.window = window
        (stream, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for end in ends {
                _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
                _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            }
        }
        (wake, waker) = (ends[0], ends[1])
    }

    deinit {
        Glibc.close(wake)
        Glibc.close(waker)
    }

    func start(_ opened: CheckedContinuation<HTTPResponseHead, any Error>) {
        guard wake >= 0, startThread(name: "berth-upgraded", stackSize: 256 * 1024, { self.run(opened) }) else {
            opened.resume(throwing: HTTPClientError.transport("no thread for a connection to \(endpoint)"))
            return
        }
    }

    func enqueue(_ command: Command) {
        let accepted = state.withLock { state in
            guard !state.ended else { return false }
            state.commands.append(command)
            return true
        }
        guard accepted else {
            switch command {
            case .bytes(_, let done), .closeWrite(let done): done.resume(throwing: HTTPClientError.cancelled)
            }
            return
        }
        signal()
    }

    func consumed(_ count: Int) {
        let resume = state.withLock { state in
            let wasFull = state.unread >= window
            state.unread -= count
            return wasFull && state.unread < window
        }
        if resume { signal() }
    }

    func close() {
        state.withLock { $0.closing = true }
        signal()
    }

    private func signal() {
        var one: UInt8 = 1
        _ = Glibc.write(waker, &one, 1)
    }

    // MARK: - On the connection's thread

    private func run(_ opened: CheckedContinuation<HTTPResponseHead, any Error>) {
        guard let handle = curl_easy_init() else {
            opened.resume(throwing: HTTPClientError.transport("libcurl could not make a handle"))
            return end(nil, handle: nil)
        }
        let deadline = ContinuousClock.now + (request.timeout ?? connectTimeout)
        let socket: Int32
        let leftover: Data
        do {
            socket = try connect(handle)
            try sendAll(Self.requestBytes(request, endpoint: endpoint), handle: handle, socket: socket, until: deadline)
            let (head, rest) = try readHead(handle: handle, socket: socket, until: deadline)
            opened.resume(returning: head)
            leftover = rest
        } catch {
            opened.resume(throwing: error)
            return end(nil, handle: handle)
        }
        if !leftover.isEmpty { deliver(leftover) }
        end(carry(handle: handle, socket: socket), handle: handle)
    }

    private func connect(_ handle: UnsafeMutableRawPointer) throws -> Int32 {
        var setupError: HTTPClientError?
        func check(_ code: CURLcode, _ what: String) {
            if code != CURLE_OK && setupError == nil {
                setupError = .transport("libcurl refused \(what): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        check(berth_setopt_string(handle, CURLOPT_URL, endpoint.baseURL + "/"), "the URL")
        if case .unix(let path) = endpoint.kind { check(berth_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, path), "the socket path") }
        configureTLS(endpoint.tls, on: handle, check)
        berth_setopt_long(handle, CURLOPT_CONNECT_ONLY, 1)
        berth_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        berth_setopt_string(handle, CURLOPT_PROXY, "")
        berth_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds))
        if let setupError { throw setupError }
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else {
            let reason = String(cString: curl_easy_strerror(code))
            switch code {
            case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_CACERT_BADFILE:
                throw HTTPClientError.untrusted(endpoint: endpoint.description, reason: reason)
            case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM:
                throw HTTPClientError.tlsFailed(endpoint: endpoint.description, reason: reason)
            default:
                throw HTTPClientError.unreachable(endpoint: endpoint.description, reason: reason)
            }
        }
        let socket = berth_active_socket(handle)
        guard socket >= 0 else { throw HTTPClientError.transport("libcurl gave no socket for \(endpoint)") }
        return socket
    }

    static func requestBytes(_ request: HTTPRequest, endpoint: HTTPEndpoint) -> Data {
        var head = "\(request.method) \(request.target) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\n"
        var body = Data()
        if case .data(let data, let contentType) = request.body {
            head += "Content-Type: \(contentType)\r\n"
            body = data
        }
        if request.method == "POST" || request.method == "PUT" || !body.isEmpty { head += "Content-Length: \(body.count)\r\n" }
        for header in request.headers { head += "\(header.name): \(header.value)\r\n" }
        return Data((head + "\r\n").utf8) + body
    }

    private func sendAll(_ data: Data, handle: UnsafeMutableRawPointer, socket: Int32, until deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < data.count {
            var sent = 0
            let code = data.withUnsafeBytes { bytes in
                curl_easy_send(handle, bytes.baseAddress! + offset, bytes.count - offset, &sent)
            }
            if code == CURLE_AGAIN {
                try waitFor(Int16(POLLOUT), socket: socket, until: deadline)
                continue
            }
            guard code == CURLE_OK else { throw failure("sending the request", code) }
            offset += sent
        }
    }

    /// Reads up to the end of the head; returns it and whatever came after it.
    private func readHead(handle: UnsafeMutableRawPointer, socket: Int32, until deadline: ContinuousClock.Instant) throws -> (HTTPResponseHead, Data) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        let end: Int
        while true {
            if let found = Self.endOfHead(received) {
                end = found
                break
            }
            guard received.count < 64 * 1024 else { throw HTTPClientError.transport("\(request.method) \(request.path): the answer's head is over 64 KiB") }
            let count = try receive(into: &buffer, handle: handle, socket: socket, until: deadline)
            guard count > 0 else { throw HTTPClientError.unreachable(endpoint: endpoint.description, reason: "the connection closed without an answer") }
            received += buffer[0..<count]
        }
        let head = try Self.parseHead(received[0..<end], request: request)
        var rest = Data(received[(end + 4)...])
        guard head.status == 101 || head.status == 200 else {
            // An error: its body says why (the engine's `{"message": …}`), read to its length.
            let length = min(Int(head.header("Content-Length") ?? "") ?? 64 * 1024, 64 * 1024)
            while rest.count < length, let count = try? receive(into: &buffer, handle: handle, socket: socket, until: deadline), count > 0 {
                rest += buffer[0..<count]
            }
            throw HTTPClientError.status(HTTPResponse(head: head, body: rest.prefix(length)), method: request.method, path: request.path)
        }
        return (head, rest)
    }

    private func receive(into buffer: inout [UInt8], handle: UnsafeMutableRawPointer, socket: Int32, until deadline: ContinuousClock.Instant) throws -> Int {
        while true {
            var count = 0
            let code = buffer.withUnsafeMutableBytes { curl_easy_recv(handle, $0.baseAddress, $0.count, &count) }
            if code == CURLE_AGAIN {
                try waitFor(Int16(POLLIN), socket: socket, until: deadline)
                continue
            }
            guard code == CURLE_OK else { throw failure("reading the answer", code) }
            return count
        }
    }

    private func waitFor(_ events: Int16, socket: Int32, until deadline: ContinuousClock.Instant) throws {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { throw HTTPClientError.timeout(method: request.method, path: request.path, after: request.timeout ?? connectTimeout) }
        var entry = pollfd(fd: socket, events: events, revents: 0)
        _ = poll(&entry, 1, Int32(clamping: max(1, left.milliseconds)))
    }

    static func endOfHead(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4) where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }

    static func parseHead(_ bytes: ArraySlice<UInt8>, request: HTTPRequest) throws -> HTTPResponseHead {
        let lines = bytes.split(separator: 10, omittingEmptySubsequences: false).map { $0.last == 13 ? $0.dropLast() : $0 }
        let statusParts = lines.first.map { String(decoding: $0, as: UTF8.self) }?.split(separator: " ", maxSplits: 2) ?? []
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/"), let status = Int(statusParts[1]) else {
            throw HTTPClientError.transport("\(request.method) \(request.path): the answer is not HTTP")
        }
        var head = HTTPResponseHead(version: String(statusParts[0]), status: status, reason: statusParts.count > 2 ? String(statusParts[2]) : "")
        for line in lines.dropFirst() {
            Array(line).withUnsafeBytes { head.appendField(line: $0) }
        }
        return head
    }

    private func failure(_ what: String, _ code: CURLcode) -> HTTPClientError {
        .transport("\(request.method) \(request.path): \(what): \(String(cString: curl_easy_strerror(code)))")
    }

    private func deliver(_ data: Data) {
        state.withLock { $0.unread += data.count }
        continuation.yield(data)
    }

    /// Moves bytes both ways until either side ends; returns why it ended, nil for a clean end.
    private func carry(handle: UnsafeMutableRawPointer, socket: Int32) -> (any Error)? {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var writing: (data: Data, offset: Int, done: CheckedContinuation<Void, any Error>)?
        var wroteAll = false
        while true {
            let (closing, mayRead, next) = state.withLock { state -> (Bool, Bool, Command?) in
                let next = writing == nil && !state.commands.isEmpty ? state.commands.removeFirst() : nil
                return (state.closing, state.unread < window, next)
            }
            if closing { return nil }
            if let next {
                switch next {
                case .bytes(let data, let done): writing = (data, 0, done)
                case .closeWrite(let done):
                    // Over TLS a half-close would end the session: the peer keeps its stdin.
                    if endpoint.tls == nil && !wroteAll { shutdown(socket, Int32(SHUT_WR)) }
                    wroteAll = true
                    done.resume()
                }
            }
            var progress = next != nil
            var events: Int16 = 0
            if mayRead {
                var count = 0
                let code = buffer.withUnsafeMutableBytes { curl_easy_recv(handle, $0.baseAddress, $0.count, &count) }
                if code == CURLE_OK {
                    if count == 0 {
                        writing?.done.resume(throwing: HTTPClientError.cancelled)
                        return nil
                    }
                    deliver(Data(buffer[0..<count]))
                    progress = true
                } else if code == CURLE_AGAIN {
                    events |= Int16(POLLIN)
                } else {
                    writing?.done.resume(throwing: failure("reading", code))
                    return failure("reading", code)
                }
            }
            if let current = writing {
                var sent = 0
                let code = current.data.withUnsafeBytes { bytes in
                    curl_easy_send(handle, bytes.baseAddress! + current.offset, bytes.count - current.offset, &sent)
                }
                if code == CURLE_OK {
                    progress = true
                    if current.offset + sent == current.data.count {
                        current.done.resume()
                        writing = nil
                    } else {
                        writing = (current.data, current.offset + sent, current.done)
                    }
                } else if code == CURLE_AGAIN {
                    events |= Int16(POLLOUT)
                } else {
                    current.done.resume(throwing: failure("writing", code))
                    return failure("writing", code)
                }
            }
            if progress { continue }
            var entries = [pollfd(fd: socket, events: events, revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            _ = poll(&entries, 2, -1)
            if entries[1].revents != 0 {
                var drained = [UInt8](repeating: 0, count: 64)
                _ = Glibc.read(wake, &drained, drained.count)
            }
        }
    }

    /// Ends the output (with `error`, if any), fails what was still to be written, and lets the
    /// connection go.
    private func end(_ error: (any Error)?, handle: UnsafeMutableRawPointer?) {
        let left = state.withLock { state in
            state.ended = true
            defer { state.commands = [] }
            return state.commands
        }
        for command in left {
            switch command {
            case .bytes(_, let done), .closeWrite(let done): done.resume(throwing: HTTPClientError.cancelled)
            }
        }
        if let error { continuation.finish(throwing: error) } else { continuation.finish() }
        if let handle { curl_easy_cleanup(handle) }
    }
}
