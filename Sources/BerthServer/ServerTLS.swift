import BerthCLI
import BerthConfig
import BerthTLS
import Dispatch
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import Synchronization
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A daemon's TLS: its certificate and key, the cluster's CA, and who may connect. Reloaded on
/// SIGHUP: each new connection uses the files as last read; open ones keep theirs.
public final class ServerTLS: Sendable {
    public enum Clients: Sendable {
        /// Anyone (the manager: users' clients have no certificate).
        case anyone
        /// Only a client with a certificate of the cluster's CA marked for client use, which
        /// only the manager's is (the agents).
        case manager
    }

    public let files: TLSFiles
    let clients: Clients
    fileprivate static let current = Mutex<ServerTLS?>(nil)

    /// The TLS this process serves with, for its metrics; nil when it serves plain HTTP.
    public static var serving: ServerTLS? { current.withLock { $0 } }
    private let state: Mutex<(context: NIOSSLContext, material: TLSMaterial)>

    public init(files: TLSFiles, clients: Clients) throws {
        self.files = files
        self.clients = clients
        let material = try files.load()
        state = Mutex((try Self.context(material, clients), material))
    }

    /// The files as last read.
    public var material: TLSMaterial { state.withLock { $0.material } }

    var context: NIOSSLContext { state.withLock { $0.context } }

    /// Reads the files again; on any problem keeps the previous ones and throws.
    public func reload() throws {
        let material = try files.load()
        let context = try Self.context(material, clients)
        state.withLock { $0 = (context, material) }
    }

    private static func context(_ material: TLSMaterial, _ clients: Clients) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(material.certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(material.keyPEM.utf8), format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if clients == .manager {
            // BoringSSL checks a client's certificate for the client purpose: an agent's, made for
            // serving only, fails the handshake like a stranger's.
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(material.caPEM.utf8)))
            configuration.certificateVerification = .noHostnameVerification
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// Seconds until this host's certificate expires (negative once it has).
    public var secondsToExpiry: Double { material.notValidAfter.timeIntervalSinceNow }

    /// Warns when the certificate expires within 30 days.
    public func warnIfExpiring(_ logger: Logger) {
        let days = secondsToExpiry / 86_400
        if days < 30 {
            logger.warning("TLS certificate expires soon", metadata: [
                "certificate": "\(files.certificate)", "days_left": "\(Int(days.rounded(.down)))",
                "fix": "make a new one with berth-manager tls cert, then systemctl reload",
            ])
        }
    }

    /// Adds the TLS handler, with the files as last read, to a new connection's pipeline.
    func prepare(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
    }
}

/// Both daemons' HTTP/1.1 server: over TLS when they have it, its connections held to the
/// counter's limits (the manager keeps the counter, to end a user's trust at logout).
public func daemonServer(tls: ServerTLS?, limits: ConnectionLimits = ConnectionLimits()) -> HTTPServerBuilder {
    daemonServer(tls: tls, counter: ConnectionCounter(limits: limits))
}

public func daemonServer(tls: ServerTLS?, counter: ConnectionCounter) -> HTTPServerBuilder {
    let limits = counter.limits
    let configuration = HTTP1Channel.Configuration(additionalChannelHandlers: [RequestEnds(), OutboundWindow()], idleTimeout: limits.idleTimeout)
    return HTTPServerBuilder { responder in
        PreparedChannel(base: HTTP1Channel(responder: responder, configuration: configuration)) { channel in
            try counter.guardConnection(channel)
            try tls?.prepare(channel)
        }
    }
}

/// The daemon's TLS from its configuration, or nil when it has none; a plain daemon on an address
/// others can reach (allowed by `<Insecure>`) is warned about at every start.
public func serverTLS(_ server: ServerConfig, clients: ServerTLS.Clients, logger: Logger) throws -> ServerTLS? {
    guard let files = server.tls else {
        if server.insecure {
            logger.warning("serving plain HTTP (<Insecure>true</Insecure>): passwords, tokens and output cross the network in clear")
        }
        return nil
    }
    do {
        let tls = try ServerTLS(files: files, clients: clients)
        // The key's fingerprint, to compare with what users pin (berth login --fingerprint).
        logger.info("serving TLS", metadata: [
            "certificate": "\(files.certificate)", "key_fingerprint": "\(tls.material.fingerprint.map { "\($0)" } ?? "?")",
        ])
        tls.warnIfExpiring(logger)
        ServerTLS.current.withLock { $0 = tls }
        return tls
    } catch {
        throw failure("\(server.file): TLS: \(error)")
    }
}

/// Reads the TLS files again (SIGHUP); on any problem keeps the old ones and says so.
@discardableResult
public func reloadTLS(_ tls: ServerTLS, logger: Logger) -> Bool {
    do {
        try tls.reload()
        logger.info("reloaded TLS certificate", metadata: ["certificate": "\(tls.files.certificate)"])
        tls.warnIfExpiring(logger)
        return true
    } catch {
        logger.error("TLS reload refused, keeping the previous certificate: \(error)")
        return false
    }
}

/// Runs `reload` on every SIGHUP (`systemctl reload`) until the returned source is cancelled.
public func onHangup(_ reload: @escaping @Sendable () -> Void) -> any DispatchSourceSignal {
    signal(SIGHUP, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGHUP)
    source.setEventHandler(handler: reload)
    source.resume()
    return source
}
