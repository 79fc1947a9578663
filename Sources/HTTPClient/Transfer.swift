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
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// One request in flight on a worker's easy handle. Its mutable state is touched only by the worker
/// thread until `finish` hands the outcome to the waiting task.
final class Transfer: @unchecked Sendable {
    /// How the response body reaches the caller.
    enum Delivery {
        /// Collect the whole body, then complete.
        case buffered(CheckedContinuation<HTTPResponse, any Error>)
        /// Complete the head as soon as headers arrive, then yield chunks.
        case streaming(
            head: CheckedContinuation<HTTPStreamingResponse, any Error>,
            body: BodyHandover,
            chunks: AsyncThrowingStream<Data, any Error>.Continuation
        )
        /// Collect the whole body for a caller already on the worker thread; see `outcome`.
        case direct
        /// Hand each piece of the body to `receive` right here on the worker, as libcurl reads it
        /// (an error status's body is collected instead), then complete with the response.
        case sink(receive: @Sendable (UnsafeRawBufferPointer) throws -> Void, done: CheckedContinuation<HTTPResponse, any Error>)
    }

    let request: HTTPRequest
    let endpoint: HTTPEndpoint
    let connectTimeout: Duration
    /// How long the worker polls for the answer before it sleeps; see `CurlHandles.perform`.
    let busyPoll: Duration
    /// Called with each block of request headers as actually sent (for `api-dump`).
    let traceRequest: (@Sendable (String) -> Void)?
    /// Streams normally read an error response whole and throw it; a debugging tool wants it raw.
    let streamErrorResponses: Bool
    private let delivery: Delivery
    private let cancelledFlag = Atomic<Bool>(false)
    /// 0 while queued, 1 once a worker has taken it, 2 once given up in the queue (cancelled or
    /// timed out there); a worker runs only a transfer it takes from 0.
    private let phase = Atomic<Int>(0)
    /// When the caller made the request: its timeout counts from here, time in the queue included.
    private let made = ContinuousClock.now
    /// The multi handle driving the transfer while it runs, for `cancel` to wake. Set and cleared
    /// by the worker under the lock, so a cancel never wakes a handle the transfer has left.
    private let wakeable = Mutex<UnsafeMutableRawPointer?>(nil)
    /// Bytes handed to the stream's reader and not yet taken; the worker waits above a limit,
    /// so a slow reader slows the sender instead of filling memory. Streams only.
    let flow: FlowControl?

    private var head = HTTPResponseHead(status: 0)
    private var headComplete = false
    private var headDelivered = false
    private var body = Data()
    private var uploadFile: UnsafeMutablePointer<FILE>?
    private var uploadStream: UploadStream?
    /// What a `.sink` receiver threw; the transfer ends with it.
    private var sinkError: (any Error)?
    /// The response of a `.direct` transfer, once `run` has returned.
    private(set) var outcome: Result<HTTPResponse, HTTPClientError> = .failure(.cancelled)

    init(
        request: HTTPRequest, endpoint: HTTPEndpoint, connectTimeout: Duration, busyPoll: Duration, delivery: Delivery,
        traceRequest: (@Sendable (String) -> Void)? = nil, streamErrorResponses: Bool = false, streamWindow: Int = Transport.defaultStreamWindow
    ) {
        self.streamErrorResponses = streamErrorResponses
        self.request = request
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.busyPoll = busyPoll
        self.delivery = delivery
        self.traceRequest = traceRequest
        if case .streaming = delivery { flow = FlowControl(limit: streamWindow) } else { flow = nil }
        isStreaming = switch delivery {
        case .streaming, .sink: true
        case .buffered, .direct: false
        }
    }

    var isCancelled: Bool { cancelledFlag.load(ordering: .relaxed) }

    /// Aborts the transfer at libcurl's next callback (data or progress), which the worker, woken
    /// from waiting for the socket, reaches at once.
    func cancel() {
        cancelledFlag.store(true, ordering: .relaxed)
        abandonIfQueued(.cancelled)
        flow?.wake()
        wakeable.withLock { multi in
            if let multi { curl_multi_wakeup(multi) }
        }
    }

    /// Whether the server has closed its side of the transfer's connection (POLLRDHUP).
    private static func peerHasClosed(_ handle: UnsafeMutableRawPointer) -> Bool {
        let socket = berth_active_socket(handle)
        guard socket >= 0 else { return false }
        let readHangUp: Int16 = 0x2000
        var entry = pollfd(fd: socket, events: readHangUp, revents: 0)
        return poll(&entry, 1, 0) > 0 && entry.revents & (readHangUp | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// Wakes the worker from waiting for the socket, to resume a paused upload.
    private func wakeWorker() {
        wakeable.withLock { multi in
            if let multi { curl_multi_wakeup(multi) }
        }
    }

    /// Fails the transfer with `error` if no worker has taken it yet: a caller waiting behind busy
    /// workers gets its cancellation or timeout at once, not when a worker comes free.
    func abandonIfQueued(_ error: HTTPClientError) {
        // A direct transfer is never queued: it runs on its caller's own thread, which reads its
        // outcome; a cancel from elsewhere must not write it.
        if case .direct = delivery { return }
        guard phase.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged else { return }
        finish(.failure(error))()
    }

    /// The timeout error of this request, for one that waited its whole timeout in the queue.
    var queuedTimeout: HTTPClientError {
        .timeout(method: request.method, path: request.path, after: request.timeout ?? connectTimeout)
    }

    /// Whether the body is passed on as it comes (`.streaming`, `.sink`) rather than collected.
    /// Stored: matching `delivery`, whose cases carry generic payloads, looks their type metadata
    /// up each time, and this is asked for every piece of every response.
    private let isStreaming: Bool

    // MARK: - Running on a worker thread

    /// Runs the transfer to its end and returns what hands the outcome to the caller. The worker
    /// calls that only after marking itself free, so the caller's next request finds it free.
    func run(on handles: CurlHandles) -> () -> Void {
        guard phase.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else { return {} }
        let handle = handles.easy
        if isCancelled {
            return finish(.failure(HTTPClientError.cancelled))
        }
        // Every option a request can set is set for each one, to its default where unused, instead
        // of `curl_easy_reset`, which frees and rebuilds all of libcurl's per-handle state (strings,
        // buffers, cookies) before every request.
        var headerList: UnsafeMutablePointer<curl_slist>?
        defer {
            curl_slist_free_all(headerList)
            if let file = uploadFile { fclose(file) }
            uploadFile = nil
        }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        let url = endpoint.baseURL + request.target
        let this = Unmanaged.passUnretained(self).toOpaque()

        var setupError: HTTPClientError?
        func check(_ code: CURLcode, _ what: String) {
            if code != CURLE_OK && setupError == nil {
                setupError = .transport("libcurl refused \(what): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        check(berth_setopt_string(handle, CURLOPT_URL, url), "the URL \(url)")
        if case .unix(let path) = endpoint.kind {
            check(berth_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, path), "the socket path")
        } else {
            berth_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, nil)
        }
        if handles.appliedTLS != .some(endpoint.tls) {
            configureTLS(endpoint.tls, on: handle, check)
            handles.appliedTLS = setupError == nil ? .some(endpoint.tls) : nil
        }
        berth_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        // Engine, agents and units are reached directly, whatever `http_proxy` the environment
        // names: a proxy would see every bearer token, and libcurl stops looking proxies up.
        berth_setopt_string(handle, CURLOPT_PROXY, "")
        berth_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout.milliseconds))
        berth_setopt_long(handle, CURLOPT_TIMEOUT_MS, request.timeout.map { max(1, Int(($0 - (ContinuousClock.now - made)).milliseconds)) } ?? 0)
        // Streams can carry a lot (script output): fewer, larger chunks cost less per byte.
        berth_setopt_long(handle, CURLOPT_BUFFERSIZE, isStreaming ? 256 * 1024 : Int(CURL_MAX_WRITE_SIZE))
        berth_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)

        // Without this libcurl waits for `100 Continue` before large bodies.
        headerList = curl_slist_append(headerList, "Expect:")
        for header in request.headers { headerList = curl_slist_append(headerList, "\(header.name): \(header.value)") }

        // Back to a plain GET without a body, then what this request needs. (Setting POSTFIELDS,
        // even to nothing, makes a POST: HTTPGET comes after it.)
        berth_setopt_pointer(handle, CURLOPT_POSTFIELDS, nil)
        berth_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, -1)
        berth_setopt_string(handle, CURLOPT_CUSTOMREQUEST, nil)
        berth_setopt_long(handle, CURLOPT_HTTPGET, 1)
        berth_setopt_long(handle, CURLOPT_FRESH_CONNECT, 0)
        berth_setopt_long(handle, CURLOPT_FORBID_REUSE, 0)
        switch request.method {
        case "GET": break
        case "HEAD": berth_setopt_long(handle, CURLOPT_NOBODY, 1)
        default:
            check(berth_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method), "the method")
        }

        var bodyData: Data?
        switch request.body {
        case .none:
            if request.method == "POST" || request.method == "PUT" {
                berth_setopt_long(handle, CURLOPT_POST, 1)
                berth_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, 0)
                berth_setopt_string(handle, CURLOPT_POSTFIELDS, "")
            }
        case .data(let data, let contentType):
            headerList = curl_slist_append(headerList, "Content-Type: \(contentType)")
            berth_setopt_long(handle, CURLOPT_POST, 1)
            berth_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(data.count))
            bodyData = data
        case .file(let path, let contentType):
            guard let file = fopen(path, "rb") else {
                return finish(.failure(HTTPClientError.transport("cannot read \(path): \(String(cString: strerror(errno)))")))
            }
            uploadFile = file
            fseeko(file, 0, SEEK_END)
            let size = ftello(file)
            fseeko(file, 0, SEEK_SET)
            headerList = curl_slist_append(headerList, "Content-Type: \(contentType)")
            berth_setopt_long(handle, CURLOPT_POST, 1)
            berth_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(size))
        case .stream(let upload, let contentType):
            headerList = curl_slist_append(headerList, "Content-Type: \(contentType)")
            headerList = curl_slist_append(headerList, "Transfer-Encoding: chunked")
            berth_setopt_long(handle, CURLOPT_POST, 1)
            // A connection of its own: libcurl sends a request again on a new connection when a
            // kept-alive one turns out dead, and a body written as it comes cannot be sent again.
            berth_setopt_long(handle, CURLOPT_FRESH_CONNECT, 1)
            berth_setopt_long(handle, CURLOPT_FORBID_REUSE, 1)
            uploadStream = upload
            upload.attach { [weak self] in self?.wakeWorker() }
        }
        // Reads the upload file, if any: never libcurl's default, which reads standard input.
        berth_setopt_pointer(handle, CURLOPT_READDATA, this)
        berth_setopt_data_callback(handle, CURLOPT_READFUNCTION) { buffer, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            if transfer.isCancelled { return Int(CURL_READFUNC_ABORT) }
            if let upload = transfer.uploadStream {
                return upload.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: size * count)) ?? Int(CURL_READFUNC_PAUSE)
            }
            guard let file = transfer.uploadFile else { return 0 }
            return fread(buffer, 1, size * count, file)
        }
        berth_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)

        berth_setopt_pointer(handle, CURLOPT_WRITEDATA, this)
        berth_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION) { buffer, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            if transfer.isCancelled { return 0 }
            // Anything but `length` makes libcurl end the transfer.
            return transfer.receiveBody(UnsafeRawBufferPointer(start: buffer, count: length)) ? length : 0
        }
        berth_setopt_pointer(handle, CURLOPT_HEADERDATA, this)
        berth_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION) { buffer, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            let length = size * count
            transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: buffer, count: length))
            return length
        }
        berth_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
        berth_setopt_pointer(handle, CURLOPT_XFERINFODATA, this)
        berth_setopt_xferinfo_callback(handle) { userdata, _, _, _, _ in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            return transfer.isCancelled ? 1 : 0
        }
        berth_setopt_long(handle, CURLOPT_VERBOSE, traceRequest != nil ? 1 : 0)
        if traceRequest != nil {
            berth_setopt_pointer(handle, CURLOPT_DEBUGDATA, this)
            berth_setopt_debug_callback(handle) { _, type, data, size, userdata in
                guard type == CURLINFO_HEADER_OUT, let data else { return 0 }
                let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
                let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
                transfer.traceRequest?(text)
                return 0
            }
        }

        if let setupError {
            return finish(.failure(setupError))
        }

        wakeable.withLock { $0 = handles.multi }
        let code: CURLcode
        if let bodyData {
            code = bodyData.withUnsafeBytes { bytes in
                berth_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bytes.baseAddress))
                return handles.perform(busyPoll: busyPoll)
            }
        } else if let upload = uploadStream {
            code = handles.perform(busyPoll: busyPoll) {
                // A server that has answered and closed reads no more of the body: libcurl would
                // wait for it for ever, the answer complete and the upload paused.
                if upload.isWaiting && Self.peerHasClosed(handle) { upload.finish() }
                if upload.takeResume() { curl_easy_pause(handle, CURLPAUSE_CONT) }
            }
        } else {
            code = handles.perform(busyPoll: busyPoll)
        }
        wakeable.withLock { $0 = nil }
        // The error buffer belongs to this frame; libcurl must not keep a pointer to it.
        berth_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)

        if code == CURLE_OK {
            return finish(.success(()))
        }
        let detail = errorBuffer.pointee == 0
            ? String(cString: curl_easy_strerror(code)) : String(cString: errorBuffer)
        return finish(.failure(classify(code, detail: detail, handle: handle)))
    }

    private func classify(_ code: CURLcode, detail: String, handle: UnsafeMutableRawPointer) -> HTTPClientError {
        if isCancelled { return .cancelled }
        switch code {
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_CACERT_BADFILE:
            return .untrusted(endpoint: endpoint.description, reason: detail)
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM:
            return .tlsFailed(endpoint: endpoint.description, reason: detail)
        case _ where (code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR) && endpoint.tls != nil && detail.contains("alert"):
            // TLS 1.3 checks a client's certificate after the handshake: a server that refuses it
            // says so with an alert on the first read.
            return .tlsFailed(endpoint: endpoint.description, reason: "the server refused this client: \(detail)")
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST:
            var osError = 0
            berth_getinfo_long(handle, CURLINFO_OS_ERRNO, &osError)
            let reason = osError != 0 ? String(cString: strerror(Int32(osError))).lowercased() : detail
            return .unreachable(endpoint: endpoint.description, reason: reason)
        case CURLE_OPERATION_TIMEDOUT:
            var connected = 0
            berth_getinfo_long(handle, CURLINFO_CONNECT_TIME_T, &connected)
            if connected == 0 && !headComplete {
                return .unreachable(endpoint: endpoint.description, reason: "no connection within \(connectTimeout.formattedSeconds)")
            }
            return .timeout(method: request.method, path: request.path, after: request.timeout ?? connectTimeout)
        case CURLE_GOT_NOTHING where !headComplete:
            return .unreachable(endpoint: endpoint.description, reason: "the connection closed without an answer")
        default:
            return .transport("\(request.method) \(request.path): \(detail)")
        }
    }

    // MARK: - libcurl callbacks

    /// Parses one header line at the byte level: this runs a dozen times per request, and
    /// character-wise `String` work here cost more than the rest of the client together.
    private func receiveHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        var end = bytes.count
        while end > 0 && (bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D) { end -= 1 }
        if end == 0 {
            if head.status >= 200 {
                headComplete = true
                // A refusal reads no more of a body still being written: end it, so the transfer
                // does not wait on it (libcurl keeps a paused upload open otherwise).
                if head.status >= 300 { uploadStream?.finish() }
                deliverHeadIfStreaming()
            }
            return
        }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        if end > 5 && bytes[0] == UInt8(ascii: "H") && bytes[4] == UInt8(ascii: "/") {
            // A new status line (after `100 Continue` or a redirect) starts a new head.
            let firstSpace = bytes[0..<end].firstIndex(of: UInt8(ascii: " ")) ?? end
            var status = 0
            var index = firstSpace + 1
            while index < end, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                status = status * 10 + Int(bytes[index] - 0x30)
                index += 1
            }
            head = HTTPResponseHead(
                version: text(0..<firstSpace), status: status,
                reason: index < end ? text((index + 1)..<end) : "")
            headComplete = false
        } else {
            head.appendField(line: UnsafeRawBufferPointer(rebasing: bytes[0..<end]))
        }
    }

    /// Takes a piece of the body; false ends the transfer.
    private func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard isStreaming else {
            body.append(contentsOf: bytes)
            return true
        }
        switch delivery {
        case .streaming(_, _, let chunks) where headDelivered:
            chunks.yield(Data(bytes))
            flow?.produced(bytes.count, isCancelled: { self.isCancelled })
        case .sink(let receive, _) where head.status < 400:
            do {
                try receive(bytes)
            } catch {
                sinkError = error
                return false
            }
        default:
            body.append(contentsOf: bytes)
        }
        return true
    }

    private func deliverHeadIfStreaming() {
        guard isStreaming, case .streaming(let headContinuation, let handover, _) = delivery, !headDelivered,
              let stream = handover.take()
        else { return }
        // Error responses are read whole so their message can be reported.
        guard head.status < 400 || streamErrorResponses else {
            handover.stream = stream
            return
        }
        headDelivered = true
        headContinuation.resume(returning: HTTPStreamingResponse(head: head, body: stream))
    }

    private func finish(_ outcome: Result<Void, HTTPClientError>) -> () -> Void {
        // A body still being written has nowhere to go now.
        if case .stream(let upload, _) = request.body {
            if case .failure(let error) = outcome { upload.fail(error) } else { upload.fail(.cancelled) }
        }
        switch delivery {
        case .direct:
            self.outcome = outcome.map { HTTPResponse(head: head, body: body) }
            return {}
        case .buffered(let continuation):
            let response = HTTPResponse(head: head, body: body)
            return {
                switch outcome {
                case .success: continuation.resume(returning: response)
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        case .sink(_, let continuation):
            let response = HTTPResponse(head: head, body: body)
            let failure: (any Error)? = switch outcome {
            case .success: nil
            case .failure(let error): sinkError ?? error
            }
            return {
                if let failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: response) }
            }
        case .streaming(let headContinuation, let handover, let chunks):
            _ = handover.take()
            if headDelivered {
                return {
                    switch outcome {
                    case .success, .failure(.cancelled): chunks.finish()
                    case .failure(let error): chunks.finish(throwing: error)
                    }
                }
            }
            // Only error statuses get here with success: the head was held back to read the message.
            let error: any Error = switch outcome {
            case .success:
                HTTPClientError.status(HTTPResponse(head: head, body: body), method: request.method, path: request.path)
            case .failure(let error):
                error
            }
            return {
                chunks.finish()
                headContinuation.resume(throwing: error)
            }
        }
    }
}

/// A stream body on its way to the caller. The transfer lets go of it once handed over, so that
/// the caller's reader is the body's only owner: when the reader is dropped (a client that hung
/// up, a relay that ended early) the stream ends, and with it the transfer, whose worker would
/// otherwise wait for ever for a reader to make room.
final class BodyHandover: @unchecked Sendable {
    var stream: AsyncThrowingStream<Data, any Error>?

    init(_ stream: AsyncThrowingStream<Data, any Error>) {
        self.stream = stream
    }

    func take() -> AsyncThrowingStream<Data, any Error>? {
        defer { stream = nil }
        return stream
    }
}

/// A byte budget between a transfer's worker thread (which may block) and its async reader.
final class FlowControl: @unchecked Sendable {
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    private let condition = ConditionLock()
    private var pending = 0

    /// Called on the worker: waits while the reader is more than `limit` bytes behind.
    func produced(_ count: Int, isCancelled: () -> Bool) {
        condition.lock()
        pending += count
        while pending > limit && !isCancelled() {
            _ = condition.wait(timeout: .milliseconds(50))
        }
        condition.unlock()
    }

    /// Called by the reader for every chunk it takes.
    func consumed(_ count: Int) {
        condition.lock()
        pending -= count
        if pending <= limit { condition.signal() }
        condition.unlock()
    }

    func wake() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }
}

/// TLS as an endpoint asks, every option of it, to its default where unused: the handle may
/// have served another endpoint before.
func configureTLS(_ tls: ClientTLS?, on handle: UnsafeMutableRawPointer, _ check: (CURLcode, String) -> Void) {
    if let tls, tls.trustedCAs == nil, tls.pinnedKey == nil {
        // TLS that checks nothing would look safe and be anyone's.
        check(CURLE_SSL_CACERT_BADFILE, "TLS with neither a trusted CA nor a pinned key")
    }
    if tls != nil, CurlStart.state.withLock({ $0.withoutTLS }) {
        // OpenSSL started without what checking a certificate takes.
        check(CURLE_SSL_CACERT_BADFILE, "a TLS endpoint in a process that started libcurl without TLS")
    }
    func blob(_ option: CURLoption, _ text: String?) {
        guard let text else {
            berth_setopt_blob(handle, option, nil, 0)
            return
        }
        var bytes = Array(text.utf8)
        check(bytes.withUnsafeMutableBytes { berth_setopt_blob(handle, option, $0.baseAddress, $0.count) }, "a TLS certificate or key")
    }
    // Only the cluster's CA: the system's bundle would let any public CA vouch for an agent.
    berth_setopt_string(handle, CURLOPT_CAINFO, nil)
    berth_setopt_string(handle, CURLOPT_CAPATH, nil)
    blob(CURLOPT_CAINFO_BLOB, tls?.trustedCAs)
    blob(CURLOPT_SSLCERT_BLOB, tls?.clientCertificate)
    blob(CURLOPT_SSLKEY_BLOB, tls?.clientKey)
    if tls?.clientCertificate != nil { berth_setopt_string(handle, CURLOPT_SSLCERTTYPE, "PEM") }
    let verify = tls?.trustedCAs != nil
    berth_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, verify ? 1 : 0)
    berth_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, verify ? 2 : 0)
    berth_setopt_string(handle, CURLOPT_PINNEDPUBLICKEY, tls?.pinnedKey)
    berth_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2))
}
