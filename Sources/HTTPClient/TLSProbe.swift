import CCurl

/// What certificate a TLS server presents, read without trusting it: to show a person the
/// fingerprint they could pin, as ssh does for a new host. Never used to decide trust.
public enum TLSProbe {
    /// The server's certificate as PEM, or nil when no TLS handshake happens within `timeout`.
    public static func certificate(host: String, port: Int, timeout: Duration = .seconds(3)) async -> String? {
        await withCheckedContinuation { continuation in
            // A handshake blocks: on a thread of its own, never on Swift's.
            let started = startThread(name: "berth-tls-probe", stackSize: 256 << 10) {
                continuation.resume(returning: probe(host: host, port: port, timeout: timeout))
            }
            if !started { continuation.resume(returning: nil) }
        }
    }

    private static func probe(host: String, port: Int, timeout: Duration) -> String? {
        guard let handle = curl_easy_init() else { return nil }
        defer { curl_easy_cleanup(handle) }
        let url = "https://\(host.contains(":") ? "[\(host)]" : host):\(port)/"
        berth_setopt_string(handle, CURLOPT_URL, url)
        berth_setopt_long(handle, CURLOPT_CONNECT_ONLY, 1)
        berth_setopt_long(handle, CURLOPT_CERTINFO, 1)
        berth_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0)
        berth_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0)
        berth_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        berth_setopt_string(handle, CURLOPT_PROXY, "")
        berth_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(timeout.milliseconds))
        guard curl_easy_perform(handle) == CURLE_OK, let text = berth_first_certificate(handle) else { return nil }
        return String(cString: text)
    }
}
