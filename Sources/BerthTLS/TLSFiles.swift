import BerthAPI
import Crypto
import SwiftASN1
import X509
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

/// `<CA>`, `<Cert>` and `<Key>` of a host: the cluster's CA, this host's certificate and its key.
public struct TLSFiles: Sendable, Equatable {
    public var ca: String
    public var certificate: String
    public var key: String

    public init(ca: String, certificate: String, key: String) {
        self.ca = ca
        self.certificate = certificate
        self.key = key
    }

    /// The files read and checked: each parses, the key is the certificate's, the CA signed the
    /// certificate, nothing has expired. Read whole, once: the daemons reload them on SIGHUP.
    public func load(now: Date = Date()) throws(TLSFileError) -> TLSMaterial {
        try checkKeyMode(key)
        let caPEM = try PEMFile.read(ca), certificatePEM = try PEMFile.read(certificate), keyPEM = try PEMFile.read(key)
        let authorities: [Certificate]
        let chain: [Certificate]
        do {
            authorities = try PEMDocument.parseMultiple(pemString: caPEM).map { try Certificate(pemDocument: $0) }
        } catch {
            throw TLSFileError("\(ca) holds no readable certificate: \(error)")
        }
        do {
            chain = try PEMDocument.parseMultiple(pemString: certificatePEM).map { try Certificate(pemDocument: $0) }
        } catch {
            throw TLSFileError("\(certificate) holds no readable certificate: \(error)")
        }
        guard !authorities.isEmpty else { throw TLSFileError("\(ca) holds no certificate") }
        guard let leaf = chain.first else { throw TLSFileError("\(certificate) holds no certificate") }
        let privateKey: Certificate.PrivateKey
        do {
            privateKey = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch {
            throw TLSFileError("\(key) holds no readable private key: \(error)")
        }
        guard privateKey.publicKey == leaf.publicKey else {
            throw TLSFileError("\(key) is not the key of \(certificate)")
        }
        guard authorities.contains(where: { leaf.issuer == $0.subject && $0.publicKey.isValidSignature(leaf.signature, for: leaf) }) else {
            throw TLSFileError("\(certificate) is not signed by the CA in \(ca)")
        }
        for (path, cert) in [(ca, authorities[0]), (certificate, leaf)] where cert.notValidAfter < now {
            throw TLSFileError("\(path) expired on \(cert.notValidAfter.iso8601); make a new one with berth-manager tls")
        }
        return TLSMaterial(
            files: self, caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, leaf: leaf,
            fingerprint: try? KeyFingerprint(of: leaf.publicKey))
    }

    /// Anyone who reads the key can pose as this host.
    private func checkKeyMode(_ path: String) throws(TLSFileError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw TLSFileError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw TLSFileError("\(path) is open to other users (mode \(String(mode, radix: 8))); chmod 600 \(path)")
        }
        guard info.st_uid == geteuid() else {
            throw TLSFileError("\(path) belongs to uid \(info.st_uid), not to this daemon's user (uid \(geteuid())); chown it")
        }
    }
}

/// A host's TLS files as read, checked.
public struct TLSMaterial: Sendable {
    public let files: TLSFiles
    public let caPEM: String
    public let certificatePEM: String
    public let keyPEM: String
    let leaf: Certificate
    /// Of this host's key: what a client pins with `--fingerprint`.
    public let fingerprint: KeyFingerprint?

    /// When this host's certificate expires.
    public var notValidAfter: Date { leaf.notValidAfter }

    /// Whether the certificate may be the client agents obey (`berth-manager tls cert --manager`).
    public var isManagerCertificate: Bool {
        (try? leaf.extensions.extendedKeyUsage?.contains(.clientAuth)) == true
    }

    /// Whether the certificate names `address` (an IP address), as clients check.
    public func names(address: String) -> Bool {
        guard let bytes = IPAddressBytes.parse(address), let names = try? leaf.extensions.subjectAlternativeNames else { return false }
        return names.contains { name in
            if case .ipAddress(let octets) = name { return Array(octets.bytes) == bytes }
            return false
        }
    }
}
