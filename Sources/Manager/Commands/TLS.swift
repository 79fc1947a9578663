import ArgumentParser
import BerthAPI
import BerthCLI
import BerthTLS
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `berth-manager tls`: the cluster's CA and its hosts' certificates.
struct TLS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "Make the cluster's certificate authority and its hosts' certificates.",
        discussion: """
            Make the CA once, on a machine you trust, and keep ca.key there; copy ca.crt to every host \
            and every client. Then one certificate per host, each copied with its key to that host only:
              berth-manager tls ca --out ./ca
              berth-manager tls cert --ca ./ca --host 192.168.0.76 --manager --out ./hosts
              berth-manager tls cert --ca ./ca --host 192.168.0.77 --out ./hosts
            """,
        subcommands: [MakeCA.self, MakeCert.self]
    )
}

struct MakeCA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "Make a new CA: DIR/ca.crt and DIR/ca.key (0600). Never overwrites.")

    @Option(help: ArgumentHelp("Where to write them; made if missing.", valueName: "dir"))
    var out: String

    @Option(help: "How many days the CA is valid.")
    var days = ClusterCertificates.defaultCADays

    func validate() throws {
        guard (1...36_500).contains(days) else { throw ValidationError("--days must be from 1 to 36500") }
    }

    func run() async throws {
        let certificate = out + "/ca.crt", key = out + "/ca.key"
        do throws(TLSFileError) {
            try NewFiles.makeDirectory(out)
            try NewFiles.checkAbsent([certificate, key])
            let made: (certificate: String, key: String)
            do {
                made = try ClusterCertificates.makeAuthority(days: days)
            } catch {
                throw TLSFileError("cannot make the CA: \(error)")
            }
            try NewFiles.write(made.key, to: key, mode: 0o600)
            try NewFiles.write(made.certificate, to: certificate, mode: 0o644)
            print("wrote \(certificate) (copy it to every host and client) and \(key) (keep it here, 0600)")
            if let fingerprint = try? KeyFingerprint(certificatePEM: made.certificate) { print("fingerprint of the CA's own key (not the manager's): \(fingerprint)") }
        } catch {
            throw failure("\(error)")
        }
    }
}

struct MakeCert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "Make a host's certificate: DIR/IP.crt and DIR/IP.key (0600), signed by the CA. Never overwrites.")

    @Option(help: ArgumentHelp("The folder of ca.crt and ca.key.", valueName: "dir"))
    var ca: String

    @Option(help: ArgumentHelp("The host's IP addresses, comma-separated; the first names the files.", valueName: "ip,..."))
    var host: String

    @Flag(help: "The entry host's certificate: the only one agents obey.")
    var manager = false

    @Option(help: ArgumentHelp("Where to write them; made if missing.", valueName: "dir"))
    var out: String

    @Option(help: "How many days the certificate is valid (never past the CA).")
    var days = ClusterCertificates.defaultHostDays

    var addresses: [String] { host.split(separator: ",").map { String($0).trimmingPrefix(" ").description } }

    func validate() throws {
        guard (1...36_500).contains(days) else { throw ValidationError("--days must be from 1 to 36500") }
        guard !addresses.isEmpty else { throw ValidationError("--host needs at least one IP address") }
    }

    func run() async throws {
        let name = String(addresses[0].map { $0 == ":" ? "_" : $0 })
        let certificate = "\(out)/\(name).crt", key = "\(out)/\(name).key"
        do throws(TLSFileError) {
            let authority = (certificate: try PEMFile.read(ca + "/ca.crt"), key: try PEMFile.read(ca + "/ca.key"))
            let made: (certificate: String, key: String)
            do {
                made = try ClusterCertificates.makeHost(addresses: addresses, manager: manager, authority: authority, days: days)
            } catch let error as TLSFileError {
                throw error
            } catch {
                throw TLSFileError("cannot make the certificate with \(ca): \(error)")
            }
            try NewFiles.makeDirectory(out)
            try NewFiles.checkAbsent([certificate, key])
            try NewFiles.write(made.key, to: key, mode: 0o600)
            try NewFiles.write(made.certificate, to: certificate, mode: 0o644)
            print("wrote \(certificate) and \(key) for \(addresses.joined(separator: ", "))\(manager ? " (manager)" : ""): copy both to that host only")
            // What users compare with, or pin with berth login --fingerprint: learnt here, not over the network.
            if let fingerprint = try? KeyFingerprint(certificatePEM: made.certificate) { print("fingerprint of its key: \(fingerprint)") }
        } catch {
            throw failure("\(error)")
        }
    }
}
