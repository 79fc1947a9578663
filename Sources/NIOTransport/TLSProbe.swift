import HTTPWire
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SwiftASN1
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What certificate a TLS server presents, read without trusting it: to show a person the
/// fingerprint they could pin, as ssh does for a new host. Never used to decide trust.
public enum TLSProbe {
    /// The server's certificate as PEM, or nil when no TLS handshake happens within `timeout`.
    public static func certificate(host: String, port: Int, timeout: Duration = .seconds(3)) async -> String? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        guard let context = try? NIOSSLContext(configuration: configuration) else { return nil }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let found = loop.makePromise(of: String?.self)
        let deadline = loop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { found.succeed(nil) }
        let serverName = HTTPEndpoint(.tcp(host: host, port: port)).serverName
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(timeout.nanoseconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(CertificateCatcher(found))
                }
            }
        // A name is resolved by NIO, off the caller's thread.
        let connected = (try? SocketAddress(ipAddress: host, port: port)).map { bootstrap.connect(to: $0) }
            ?? bootstrap.connect(host: host, port: port)
        connected.whenFailure { _ in found.succeed(nil) }
        let pem = try? await found.futureResult.get()
        deadline.cancel()
        if let channel = try? await connected.get() { try? await channel.close() }
        return pem ?? nil
    }
}

/// Takes the server's certificate once the handshake is done; any failure means none.
private final class CertificateCatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    private let found: EventLoopPromise<String?>

    init(_ found: EventLoopPromise<String?>) {
        self.found = found
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)
            found.succeed(handler?.peerCertificate.flatMap { try? $0.toDERBytes() }.map { PEMDocument(type: "CERTIFICATE", derBytes: $0).pemString })
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        found.succeed(nil)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        found.succeed(nil)
        context.fireChannelInactive()
    }

}
