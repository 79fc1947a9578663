import BerthAPI
import BerthTLS
import Foundation
import Testing

/// The cluster's certificates as `berth-manager tls` makes them, read back with openssl's eyes
/// where it matters: roles, names, validity, and files that are never overwritten.
@Suite struct ClusterCertificatesTests {
    let folder = NSTemporaryDirectory() + "berth-tls-tests-\(UUID().uuidString.prefix(8))"

    @Test func hostCertificatesNameTheirAddressesAndOnlyTheManagersMayBeAClient() throws {
        let ca = try ClusterCertificates.makeAuthority()
        let agent = try ClusterCertificates.makeHost(addresses: ["192.168.0.77", "fe80::1"], manager: false, authority: ca)
        let manager = try ClusterCertificates.makeHost(addresses: ["192.168.0.76"], manager: true, authority: ca)
        try NewFiles.makeDirectory(folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for (name, text, mode) in [("ca.crt", ca.certificate, 0o644), ("a.crt", agent.certificate, 0o644), ("a.key", agent.key, 0o600),
                                   ("m.crt", manager.certificate, 0o644), ("m.key", manager.key, 0o600)] {
            try NewFiles.write(text, to: "\(folder)/\(name)", mode: mode_t(mode))
        }
        let agentFiles = try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/a.crt", key: folder + "/a.key").load()
        let managerFiles = try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/m.crt", key: folder + "/m.key").load()
        #expect(!agentFiles.isManagerCertificate && managerFiles.isManagerCertificate)
        #expect(agentFiles.names(address: "192.168.0.77") && agentFiles.names(address: "fe80::1") && !agentFiles.names(address: "192.168.0.76"))
        #expect(agentFiles.notValidAfter.timeIntervalSinceNow > 396 * 86_400 && agentFiles.notValidAfter.timeIntervalSinceNow < 398 * 86_400)
        #expect(agentFiles.fingerprint == (try KeyFingerprint(certificatePEM: agent.certificate)))
    }

    @Test func aCertificateOfAnotherCAOrKeyIsRefusedNamingTheFile() throws {
        let ca = try ClusterCertificates.makeAuthority(), other = try ClusterCertificates.makeAuthority()
        let host = try ClusterCertificates.makeHost(addresses: ["10.0.0.1"], manager: false, authority: other)
        let spare = try ClusterCertificates.makeHost(addresses: ["10.0.0.1"], manager: false, authority: ca)
        try NewFiles.makeDirectory(folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try NewFiles.write(ca.certificate, to: folder + "/ca.crt", mode: 0o644)
        try NewFiles.write(host.certificate, to: folder + "/h.crt", mode: 0o644)
        try NewFiles.write(host.key, to: folder + "/h.key", mode: 0o600)
        try NewFiles.write(spare.key, to: folder + "/spare.key", mode: 0o600)
        try NewFiles.write(host.key, to: folder + "/open.key", mode: 0o644)
        #expect(throws: TLSFileError("\(folder)/h.crt is not signed by the CA in \(folder)/ca.crt")) {
            try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/h.crt", key: folder + "/h.key").load()
        }
        #expect(throws: TLSFileError("\(folder)/spare.key is not the key of \(folder)/h.crt")) {
            try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/h.crt", key: folder + "/spare.key").load()
        }
        #expect(throws: TLSFileError("\(folder)/open.key is open to other users (mode 644); chmod 600 \(folder)/open.key")) {
            try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/h.crt", key: folder + "/open.key").load()
        }
        // Signed with the wrong CA's key: refused before anything is made.
        #expect(throws: TLSFileError("the CA's key does not belong to its certificate")) {
            try ClusterCertificates.makeHost(addresses: ["10.0.0.1"], manager: false, authority: (ca.certificate, other.key))
        }
        #expect(throws: TLSFileError("db.example is not an IP address")) {
            try ClusterCertificates.makeHost(addresses: ["db.example"], manager: false, authority: ca)
        }
    }

    @Test func anExpiredCertificateIsRefusedWithTheDate() throws {
        let ca = try ClusterCertificates.makeAuthority()
        let old = try ClusterCertificates.makeHost(addresses: ["10.0.0.1"], manager: false, authority: ca, days: 1, now: Date(timeIntervalSinceNow: -3 * 86_400))
        try NewFiles.makeDirectory(folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try NewFiles.write(ca.certificate, to: folder + "/ca.crt", mode: 0o644)
        try NewFiles.write(old.certificate, to: folder + "/h.crt", mode: 0o644)
        try NewFiles.write(old.key, to: folder + "/h.key", mode: 0o600)
        #expect {
            try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/h.crt", key: folder + "/h.key").load()
        } throws: { error in
            "\(error)".hasPrefix("\(folder)/h.crt expired on ") && "\(error)".hasSuffix("; make a new one with berth-manager tls")
        }
    }

    /// Keys are written by root into folders others may share: never over a file, never
    /// through a link planted there, never readable by others for a moment.
    @Test func newFilesNeverOverwriteOrFollowALink() throws {
        try NewFiles.makeDirectory(folder + "/a/b")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try NewFiles.write("secret", to: folder + "/a/b/k.key", mode: 0o600)
        var info = stat()
        stat(folder + "/a/b/k.key", &info)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(throws: TLSFileError.self) { try NewFiles.write("again", to: folder + "/a/b/k.key", mode: 0o600) }
        symlink("/tmp/berth-tls-tests-target-\(UUID().uuidString)", folder + "/link.key")
        #expect(throws: TLSFileError.self) { try NewFiles.write("x", to: folder + "/link.key", mode: 0o600) }
        #expect(throws: TLSFileError("\(folder)/a/b/k.key already exists; move it away first (nothing was written)")) {
            try NewFiles.checkAbsent([folder + "/a/b/k.key", folder + "/a/b/new.crt"])
        }
        #expect(try String(contentsOfFile: folder + "/a/b/k.key", encoding: .utf8) == "secret")
    }

    @Test func fingerprintsReadAsOpensslAndSshWriteThem() throws {
        let digest = (0..<32).map { UInt8($0 * 7 & 0xff) }
        let fingerprint = KeyFingerprint(digest: digest)
        #expect(fingerprint.description == "SHA256:" + digest.map { String(format: "%02x", $0) }.joined())
        #expect(KeyFingerprint(parsing: fingerprint.description.uppercased().replacingOccurrences(of: "SHA256:", with: "sha256:")) == fingerprint)
        #expect(KeyFingerprint(parsing: "SHA256:" + digest.map { String(format: "%02X", $0) }.joined(separator: ":")) == fingerprint)
        #expect(fingerprint.curlPin == "sha256//" + Data(digest).base64EncodedString())
        for bad in ["", "SHA256:", "SHA256:12", "MD5:" + String(repeating: "0", count: 64), "SHA256:" + String(repeating: "g", count: 64),
                    "SHA256:" + String(repeating: "+f", count: 32)] {
            #expect(KeyFingerprint(parsing: bad) == nil, "\(bad)")
        }
    }

    /// Whoever may write in the output folder could swap a key before it is copied out; whoever
    /// owns a daemon's key file could replace it.
    @Test func aFolderOthersMayWriteInAndAKeyOfAnotherOwnerAreRefused() throws {
        try NewFiles.makeDirectory(folder)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        mkdir(folder + "/shared", 0o777)
        chmod(folder + "/shared", 0o777)
        #expect(throws: TLSFileError("\(folder)/shared belongs to another user or others may write in it; use a folder of your own (mode 700)")) {
            try NewFiles.makeDirectory(folder + "/shared")
        }
        guard geteuid() == 0 else { return }
        let ca = try ClusterCertificates.makeAuthority()
        let host = try ClusterCertificates.makeHost(addresses: ["10.0.0.1"], manager: false, authority: ca)
        try NewFiles.write(ca.certificate, to: folder + "/ca.crt", mode: 0o644)
        try NewFiles.write(host.certificate, to: folder + "/h.crt", mode: 0o644)
        try NewFiles.write(host.key, to: folder + "/h.key", mode: 0o600)
        chown(folder + "/h.key", 20_001, 20_001)
        #expect(throws: TLSFileError("\(folder)/h.key belongs to uid 20001, not to this daemon's user (uid 0); chown it")) {
            try TLSFiles(ca: folder + "/ca.crt", certificate: folder + "/h.crt", key: folder + "/h.key").load()
        }
    }
}
