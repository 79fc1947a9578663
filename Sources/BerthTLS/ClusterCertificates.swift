import BerthAPI
import Crypto
import SwiftASN1
import X509
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The cluster's certificate authority and its hosts' certificates, as `berth-manager tls` makes
/// them: ECDSA P-256 keys, a CA that signs only end certificates, and end certificates naming
/// their hosts by IP address.
///
/// Roles live in the extended key usage, which TLS libraries check themselves: every host's
/// certificate may serve (`serverAuth`); only the manager's may also be a client
/// (`clientAuth`), so an agent presenting another agent's certificate fails the handshake.
public enum ClusterCertificates {
    public static let defaultCADays = 3650
    public static let defaultHostDays = 397

    /// A new CA: its certificate and its private key, as PEM.
    public static func makeAuthority(days: Int = defaultCADays, now: Date = Date()) throws -> (certificate: String, key: String) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Berth")
            CommonName("Berth cluster CA")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 300, notValidAfter: now + Double(days) * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    /// A host's certificate, signed by the CA, naming `addresses` (IP addresses); `manager` lets it
    /// act as the client agents obey.
    public static func makeHost(
        addresses: [String], manager: Bool, authority: (certificate: String, key: String), days: Int = defaultHostDays, now: Date = Date()
    ) throws -> (certificate: String, key: String) {
        let caCertificate = try Certificate(pemEncoded: authority.certificate)
        let caKey = try Certificate.PrivateKey(pemEncoded: authority.key)
        guard caKey.publicKey == caCertificate.publicKey else {
            throw TLSFileError("the CA's key does not belong to its certificate")
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let names = try addresses.map { text -> GeneralName in
            guard let bytes = IPAddressBytes.parse(text) else { throw TLSFileError("\(text) is not an IP address") }
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))
        }
        let subject = try DistinguishedName {
            OrganizationName("Berth")
            CommonName(manager ? "berth-manager \(addresses[0])" : "berth-agent \(addresses[0])")
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 300, notValidAfter: min(now + Double(days) * 86_400, caCertificate.notValidAfter),
            issuer: caCertificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(manager ? [.serverAuth, .clientAuth] : [.serverAuth])
                SubjectAlternativeNames(names)
                SubjectKeyIdentifier(hash: publicKey)
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: caKey)
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    /// A unit's certificate for one session: made by its agent, signed by nobody (clients pin its
    /// key), naming the unit's address.
    public static func makeSelfSigned(address: String, days: Int = 30, now: Date = Date()) throws -> (certificate: String, key: String, fingerprint: KeyFingerprint) {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName {
            OrganizationName("Berth")
            CommonName("berth-unit \(address)")
        }
        let names = IPAddressBytes.parse(address).map { [GeneralName.ipAddress(ASN1OctetString(contentBytes: ArraySlice($0)))] } ?? []
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(names)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now - 300, notValidAfter: now + Double(days) * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: Certificate.PrivateKey(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation, try KeyFingerprint(of: publicKey))
    }
}

/// A problem with a certificate or key file, in one line.
public struct TLSFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// IP addresses as the bytes a certificate's subject alternative names hold.
enum IPAddressBytes {
    static func parse(_ text: String) -> [UInt8]? {
        if let v4 = parseIPv4(text) { return v4 }
        return parseIPv6(text)
    }

    private static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ ("0"..."9").contains($0) }), let value = UInt8(part),
                  part.count == 1 || part.first != "0" else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    private static func parseIPv6(_ text: String) -> [UInt8]? {
        let halves = text.split(separator: "::", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard (1...2).contains(halves.count) else { return nil }
        func groups(_ part: String) -> [UInt16]? {
            if part.isEmpty { return [] }
            var values: [UInt16] = []
            for group in part.split(separator: ":", omittingEmptySubsequences: false) {
                guard (1...4).contains(group.count), group.allSatisfy(\.isHexDigit), let value = UInt16(group, radix: 16) else { return nil }
                values.append(value)
            }
            return values
        }
        guard let head = groups(halves[0]) else { return nil }
        let tail = halves.count == 2 ? groups(halves[1]) : []
        guard let tail else { return nil }
        let count = head.count + tail.count
        guard halves.count == 2 ? count < 8 : count == 8 else { return nil }
        let all = head + [UInt16](repeating: 0, count: 8 - count) + tail
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }
}
