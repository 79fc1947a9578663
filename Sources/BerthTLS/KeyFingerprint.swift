import BerthAPI
import Crypto
import SwiftASN1
import X509

extension KeyFingerprint {
    public init(of key: Certificate.PublicKey) throws {
        var serializer = DER.Serializer()
        try serializer.serialize(key)
        self.init(digest: Array(SHA256.hash(data: serializer.serializedBytes)))
    }

    /// The fingerprint of the key of the first certificate in `pem`.
    public init(certificatePEM pem: String) throws {
        try self.init(of: try Certificate(pemEncoded: pem).publicKey)
    }
}
