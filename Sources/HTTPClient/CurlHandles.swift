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

/// A worker's libcurl handles: the easy handle that carries its requests, and the multi handle
/// that drives them and keeps the connection alive between them. Used by its worker thread only.
final class CurlHandles: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    let multi: UnsafeMutableRawPointer
    /// Whether this worker's last answer came within twice the busy poll. Only then does the next
    /// transfer poll: an answer that is slower than that came from an engine busy working, not
    /// from one waking up, and on a small machine the CPU a poll takes is CPU the engine then
    /// lacks (listing 10 containers, ~0.85 ms, measured up to 10 % slower with the poll).
    private var answersComeQuickly = true
    /// Transfers since this worker last polled. An answer waited for asleep includes the wake-up,
    /// so it alone cannot show that answers come quickly again: every `probeEvery`-th transfer
    /// polls anyway and finds out.
    private var transfersWithoutPoll = 0
    static let probeEvery = 8
    /// The TLS settings last applied to `easy` (`.some(nil)`: plain HTTP); nil before the first
    /// transfer. A worker almost always serves one endpoint, so they are set once, not per request.
    var appliedTLS: ClientTLS??

    /// Kept until the handles are gone: libcurl frees a shared cache only once no handle uses it.
    private let sessions: TLSSessions?

    init?(sessions: TLSSessions? = nil) {
        guard let easy = curl_easy_init() else { return nil }
        guard let multi = curl_multi_init() else {
            curl_easy_cleanup(easy)
            return nil
        }
        self.easy = easy
        self.multi = multi
        self.sessions = sessions
        if let sessions { _ = berth_use_tls_sessions(easy, sessions.cache) }
    }

    /// Closes the connection and frees both handles.
    func cleanup() {
        curl_multi_cleanup(multi)
        curl_easy_cleanup(easy)
    }

    /// Runs the transfer set up on `easy` to its end, as `curl_easy_perform` does, except for how
    /// it waits for the answer: polling the socket for up to `busyPoll` first (while answers come
    /// quickly, and every `probeEvery`-th transfer otherwise; see `answersComeQuickly`), and
    /// sleeping only after that. A local engine answers a small request within some tens of
    /// microseconds, and a thread that went to sleep for it takes about as long again to wake on
    /// a virtual machine; the busy poll costs at most `busyPoll` of CPU per transfer, however long
    /// the transfer runs.
    /// `afterWait` runs on this thread each time the wait ends (an upload that was paused for
    /// want of data resumes there: libcurl lets only the transfer's own thread unpause it).
    func perform(busyPoll: Duration, afterWait: (() -> Void)? = nil) -> CURLcode {
        guard curl_multi_add_handle(multi, easy) == CURLM_OK else { return CURLE_FAILED_INIT }
        defer { curl_multi_remove_handle(multi, easy) }
        let clock = ContinuousClock()
        let polls = answersComeQuickly || transfersWithoutPoll + 1 >= Self.probeEvery
        var pollLeft = polls ? busyPoll : .zero
        // Time spent waiting for the socket, polling or asleep (which includes waking up).
        var waited = Duration.zero
        var running: Int32 = 1
        while true {
            guard curl_multi_perform(multi, &running) == CURLM_OK else { return CURLE_FAILED_INIT }
            if running == 0 { break }
            let start = clock.now
            if pollLeft > .zero {
                let socket = berth_multi_reading_socket(multi)
                if socket >= 0 {
                    let readable = Self.pollReadable(socket, until: start + pollLeft, clock: clock)
                    let polled = clock.now - start
                    pollLeft -= polled
                    if readable {
                        waited += polled
                        continue
                    }
                }
            }
            // Wakes for the socket, libcurl's own timeouts, or `Transfer.cancel` (curl_multi_wakeup);
            // at least once a second in any case. The progress callback then sees a cancellation.
            guard curl_multi_poll(multi, nil, 0, 1000, nil) == CURLM_OK else { return CURLE_FAILED_INIT }
            waited += clock.now - start
            afterWait?()
        }
        answersComeQuickly = waited <= busyPoll * 2
        transfersWithoutPoll = polls ? 0 : transfersWithoutPoll + 1
        var queued: Int32 = 0
        while let message = curl_multi_info_read(multi, &queued) {
            if message.pointee.msg == CURLMSG_DONE { return message.pointee.data.result }
        }
        return CURLE_OK
    }

    /// Whether `socket` turns readable before `deadline`, asked without sleeping.
    private static func pollReadable(_ socket: Int32, until deadline: ContinuousClock.Instant, clock: ContinuousClock) -> Bool {
        var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        repeat {
            if poll(&entry, 1, 0) != 0 { return true }
        } while clock.now < deadline
        return false
    }
}

/// The TLS sessions of one transport's connections, shared by all its workers: a worker that
/// connects to the server, for the first time or after the server closed its idle connection,
/// resumes a session another made instead of a full handshake (certificates sent and checked
/// both ways).
final class TLSSessions: @unchecked Sendable {
    let cache: UnsafeMutablePointer<berth_tls_sessions>

    init?() {
        _ = CurlWorkerPool.globalInit
        guard let cache = berth_tls_sessions_new() else { return nil }
        self.cache = cache
    }

    deinit {
        berth_tls_sessions_free(cache)
    }
}
