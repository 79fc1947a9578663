import BerthAPI
import BerthCore
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

/// The audit log: one JSON object per line in `<state-dir>/audit.jsonl`, appended and flushed
/// per event: logins (with the client's address), logouts, forced ends, unit failures, exec,
/// admin actions.
actor Audit {
    struct Entry: Encodable {
        var time: Date
        var event: String
        var user: String
        var from: String?
        var detail: String?
    }

    /// Opened for appending, so every line lands at the end; -1 when the file cannot be opened.
    private let descriptor: Int32

    init(stateDirectory: String) {
        descriptor = open(stateDirectory + "/audit.jsonl", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    func record(_ event: String, user: String, from: String? = nil, detail: String? = nil) {
        guard descriptor >= 0, var line = try? BerthJSON.encoder.encode(Entry(time: Date(), event: event, user: user, from: from, detail: detail)) else { return }
        line.append(UInt8(ascii: "\n"))
        // One write(2) of the whole line: with O_APPEND, lines never interleave.
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}
