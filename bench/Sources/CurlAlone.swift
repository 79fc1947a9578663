import CCurl
import Foundation

/// libcurl with nothing of Berth around it: one easy handle reused for every request, a blocking
/// `curl_easy_perform` on the caller's thread, the body discarded. What any libcurl client pays at
/// least, so the table shows how much of EngineAPI's distance to the floor is libcurl's own.
/// Used by one thread at a time.
final class CurlAlone: @unchecked Sendable {
    private let handle: UnsafeMutableRawPointer

    init(socketPath: String, target: String) throws {
        guard let handle = curl_easy_init() else { throw BenchError("curl_easy_init failed") }
        self.handle = handle
        berth_setopt_string(handle, CURLOPT_URL, "http://docker\(target)")
        berth_setopt_string(handle, CURLOPT_UNIX_SOCKET_PATH, socketPath)
        berth_setopt_string(handle, CURLOPT_PROXY, "")
        berth_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        berth_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION) { _, size, count, _ in size * count }
    }

    deinit { curl_easy_cleanup(handle) }

    /// One request; the response's status.
    func request() throws -> Int {
        let code = curl_easy_perform(handle)
        guard code == CURLE_OK else { throw BenchError("libcurl: \(String(cString: curl_easy_strerror(code)))") }
        var status = 0
        berth_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return status
    }
}
