import BerthCore
import Foundation

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

    private let handle: FileHandle?

    init(stateDirectory: String) {
        let path = stateDirectory + "/audit.jsonl"
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        handle = FileHandle(forWritingAtPath: path)
        _ = try? handle?.seekToEnd()
    }

    func record(_ event: String, user: String, from: String? = nil, detail: String? = nil) {
        guard let handle, var line = try? BerthJSON.encoder.encode(Entry(time: Date(), event: event, user: user, from: from, detail: detail)) else { return }
        line.append(UInt8(ascii: "\n"))
        try? handle.write(contentsOf: line)
    }
}
