import BerthAPI
import BerthTLS
import Crypto
import Foundation
import HTTPClient
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TestSupport
import Testing
import X509
@testable import NIOTransport

/// What either transport promises (the daemons' libcurl one and `berth`'s SwiftNIO one), held to
/// the same tests: bodies whole, errors named alike, TLS checked before a byte of the request goes.
@Suite struct TransportContractTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case curl, nio
        var testDescription: String { rawValue }

        /// Generous limits: in-process servers of other suites share the event loops of this process.
        func make(_ endpoint: HTTPEndpoint, connectTimeout: Duration = .seconds(30)) -> any HTTPTransport {
            switch self {
            case .curl: Transport.make(endpoint: endpoint, connectTimeout: connectTimeout, streamWindow: 1 << 20)
            case .nio: NIOTransport.make(endpoint: endpoint, connectTimeout: connectTimeout, streamWindow: 1 << 20)
            }
        }
    }

    final class Pieces: Sendable {
        let state = Mutex<(bytes: [UInt8], count: Int)>(([], 0))
        func take(_ piece: UnsafeRawBufferPointer) {
            state.withLock { $0.bytes += piece; $0.count += 1 }
        }
    }

    struct Refusal: Error, Equatable {}

    @Test(arguments: Kind.allCases) func aLongBodyArrivesWholeInPieces(kind: Kind) async throws {
        let body = String((0..<600_000).map { _ in "abcdefghij".randomElement()! })
        let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { server.stop() }
        let pieces = Pieces()
        let response = try await kind.make(HTTPEndpoint(.unix(path: server.path))).receive(HTTPRequest(method: "GET", path: "/logs")) { pieces.take($0) }
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(pieces.state.withLock { $0.bytes } == Array(body.utf8))

        let streamed = try await kind.make(HTTPEndpoint(.unix(path: server.path))).stream(HTTPRequest(method: "GET", path: "/logs"), streamErrorResponses: false)
        var bytes: [UInt8] = []
        for try await chunk in streamed.body { bytes += chunk }
        #expect(bytes == Array(body.utf8))
    }

    @Test(arguments: Kind.allCases) func anErrorStatusKeepsItsBodyForTheMessage(kind: Kind) async throws {
        let message = #"{"message":"no such container: x"}"#
        let server = try FakeServer(response: "HTTP/1.1 404 Not Found\r\nContent-Length: \(message.utf8.count)\r\n\r\n\(message)")
        defer { server.stop() }
        let transport = kind.make(HTTPEndpoint(.unix(path: server.path)))
        let pieces = Pieces()
        let response = try await transport.receive(HTTPRequest(method: "GET", path: "/logs")) { pieces.take($0) }
        #expect(response.status == 404)
        #expect(String(decoding: response.body, as: UTF8.self) == message)
        #expect(pieces.state.withLock { $0.count } == 0)
        await #expect {
            _ = try await transport.stream(HTTPRequest(method: "GET", path: "/logs"), streamErrorResponses: false)
        } throws: { error in
            guard case HTTPClientError.status(let response, _, _) = error else { return false }
            return response.status == 404 && String(decoding: response.body, as: UTF8.self) == message
        }
        #expect(try await transport.send(HTTPRequest(method: "GET", path: "/x")).status == 404)
    }

    @Test(arguments: Kind.allCases) func whatTheReceiverThrowsEndsTheTransferAndComesBack(kind: Kind) async throws {
        let body = String(repeating: "x", count: 600_000)
        let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { server.stop() }
        let pieces = Pieces()
        await #expect(throws: Refusal()) {
            _ = try await kind.make(HTTPEndpoint(.unix(path: server.path))).receive(HTTPRequest(method: "GET", path: "/logs")) { piece in
                pieces.take(piece)
                throw Refusal()
            }
        }
        #expect(pieces.state.withLock { $0.count } == 1)
    }

    @Test(arguments: Kind.allCases) func aSilentServerTimesOutAndNothingListeningIsUnreachable(kind: Kind) async throws {
        let server = try FakeServer(response: nil)
        defer { server.stop() }
        // The silent server closes after 30 s: a transport that ignored the timeout would get
        // "closed without an answer" then, not a timeout.
        await #expect {
            _ = try await kind.make(HTTPEndpoint(.unix(path: server.path))).send(HTTPRequest(method: "GET", path: "/x", timeout: .milliseconds(300)))
        } throws: { error in
            guard case HTTPClientError.timeout(let method, let path, _) = error else { return false }
            return method == "GET" && path == "/x"
        }

        let port = try freePort()
        await #expect {
            _ = try await kind.make(HTTPEndpoint(.tcp(host: "127.0.0.1", port: port))).send(HTTPRequest(method: "GET", path: "/"))
        } throws: { error in
            guard case HTTPClientError.unreachable(let endpoint, let reason) = error else { return false }
            return endpoint == "tcp://127.0.0.1:\(port)" && reason == "connection refused"
        }
    }

    /// A connection lost mid-answer: what arrived is handed over, then the loss, never a
    /// short body that looks whole.
    @Test(arguments: Kind.allCases) func aCutAnswerEndsInAnError(kind: Kind) async throws {
        let sent = String(repeating: "y", count: 100_000)
        let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n\(sent)")
        defer { server.stop() }
        let response = try await kind.make(HTTPEndpoint(.unix(path: server.path))).stream(HTTPRequest(method: "GET", path: "/logs"), streamErrorResponses: false)
        var received = 0
        await #expect(throws: HTTPClientError.self) {
            for try await chunk in response.body { received += chunk.count }
        }
        #expect(received == sent.utf8.count)
        await #expect(throws: HTTPClientError.self) {
            _ = try await kind.make(HTTPEndpoint(.unix(path: server.path))).send(HTTPRequest(method: "GET", path: "/x"))
        }
    }

    /// Whoever listens at an address given by mistake cannot fill `berth`'s memory with an answer.
    @Test func anOverlongAnswerIsRefused() async throws {
        let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(NIOTransport.largestAnswer + 1)\r\n\r\n" + String(repeating: "z", count: NIOTransport.largestAnswer + 1))
        defer { server.stop() }
        await #expect {
            _ = try await NIOTransport(endpoint: HTTPEndpoint(.unix(path: server.path))).send(HTTPRequest(method: "GET", path: "/x"))
        } throws: { error in
            "\(error)".contains("the answer is larger than 16 MB")
        }
    }

    /// TLS that trusts no CA and pins no key would check nothing: refused before connecting.
    @Test(arguments: Kind.allCases) func tlsThatChecksNothingIsRefused(kind: Kind) async throws {
        await #expect {
            _ = try await kind.make(HTTPEndpoint(.tcp(host: "127.0.0.1", port: 9), tls: ClientTLS())).send(HTTPRequest(method: "GET", path: "/", timeout: .seconds(2)))
        } throws: { error in
            "\(error)".contains("TLS with neither a trusted CA nor a pinned key")
        }
    }

    /// The attack: a server with a key the client was not told to trust. The request (a login,
    /// with its password) must never reach it, whether trust comes from a CA or a pinned key.
    @Test(arguments: Kind.allCases) func anUntrustedServerNeverSeesTheRequest(kind: Kind) async throws {
        let authority = try ClusterCertificates.makeAuthority()
        let host = try ClusterCertificates.makeHost(addresses: ["127.0.0.1"], manager: false, authority: authority)
        let server = try await RecordingServer(tls: host)
        defer { server.stop() }
        let endpoint = { (tls: ClientTLS) in HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port), tls: tls) }
        // Generous: the in-process servers of other suites share these event loops.
        let login = HTTPRequest(method: "POST", path: "/v1/login", body: .data(Data(#"{"password":"secret"}"#.utf8), contentType: "application/json"), timeout: .seconds(30))

        // Trusted by its CA, and by its key: answered.
        #expect(try await kind.make(endpoint(ClientTLS(trustedCAs: authority.certificate))).send(login).status == 200)
        let key = try KeyFingerprint(certificatePEM: host.certificate).curlPin
        #expect(try await kind.make(endpoint(ClientTLS(pinnedKey: key))).send(login).status == 200)
        #expect(server.requests == 2)

        let foreign = try ClusterCertificates.makeAuthority()
        let otherKey = try KeyFingerprint(certificatePEM: try ClusterCertificates.makeSelfSigned(address: "127.0.0.1").certificate).curlPin
        let misnamed = try ClusterCertificates.makeHost(addresses: ["127.0.0.9"], manager: false, authority: authority)
        let misnamedServer = try await RecordingServer(tls: misnamed)
        defer { misnamedServer.stop() }
        let attempts: [(HTTPEndpoint, String)] = [
            (endpoint(ClientTLS(trustedCAs: foreign.certificate)), "another CA"),
            (endpoint(ClientTLS(pinnedKey: otherKey)), "another key"),
            (endpoint(ClientTLS(trustedCAs: authority.certificate, pinnedKey: otherKey)), "the CA but another key"),
            (HTTPEndpoint(.tcp(host: "127.0.0.1", port: misnamedServer.port), tls: ClientTLS(trustedCAs: authority.certificate)), "a certificate naming another address"),
        ]
        for (endpoint, what) in attempts {
            await #expect("trusting \(what)") {
                _ = try await kind.make(endpoint).send(login)
            } throws: { error in
                guard case HTTPClientError.untrusted = error else { return false }
                return true
            }
        }
        let seen = String(decoding: server.received, as: UTF8.self)
        #expect(seen.components(separatedBy: "secret").count - 1 == 2, "an untrusted server received \(seen)")
        #expect(misnamedServer.received.isEmpty, "a misnamed server received a request")
    }

    /// The attack: a server at the address a host name led to (a spoofed name), holding a
    /// certificate of the trusted CA that names that address but not the name. A name is
    /// checked against the certificate's DNS names only.
    @Test(arguments: Kind.allCases) func aHostNameMustBeNamedByTheCertificate(kind: Kind) async throws {
        let authority = try ClusterCertificates.makeAuthority()
        let byAddress = try ClusterCertificates.makeHost(addresses: ["127.0.0.1"], manager: false, authority: authority)
        let server = try await RecordingServer(tls: byAddress)
        defer { server.stop() }
        let login = HTTPRequest(method: "POST", path: "/v1/login", body: .data(Data(#"{"password":"secret"}"#.utf8), contentType: "application/json"), timeout: .seconds(30))
        await #expect {
            _ = try await kind.make(HTTPEndpoint(.tcp(host: "localhost", port: server.port), tls: ClientTLS(trustedCAs: authority.certificate))).send(login)
        } throws: { error in
            guard case HTTPClientError.untrusted = error else { return false }
            return true
        }
        #expect(!String(decoding: server.received, as: UTF8.self).contains("secret"))

        let byName = try Self.certificate(naming: "localhost", authority: authority)
        let named = try await RecordingServer(tls: byName)
        defer { named.stop() }
        let answer = try await kind.make(HTTPEndpoint(.tcp(host: "localhost", port: named.port), tls: ClientTLS(trustedCAs: authority.certificate))).send(login)
        #expect(answer.status == 200)
    }

    /// A request body's writer hears of a request that failed before it was sent (nothing
    /// listening), instead of waiting forever once its window is full. A watchdog frees a writer
    /// still waiting after 30 s, so a regression fails the test rather than hanging the run.
    @Test(arguments: Kind.allCases) func aWriterLearnsOfARequestThatNeverWent(kind: Kind) async throws {
        let upload = UploadStream(window: 64 << 10)
        let request = HTTPRequest(method: "PUT", path: "/v1/files", body: .stream(upload, contentType: "application/x-tar"))
        let transport = kind.make(HTTPEndpoint(.tcp(host: "127.0.0.1", port: try freePort())))
        let sending = Task { try await transport.send(request) }
        let writer = Task {
            for _ in 0..<64 { try await upload.write(Data(count: 32 << 10)) }
        }
        let watchdog = Task {
            try await Task.sleep(for: .seconds(30))
            upload.fail(.transport("watchdog"))
        }
        await #expect(throws: (any Error).self) { try await sending.value }
        let written = await writer.result
        watchdog.cancel()
        guard case .failure(let error) = written else {
            Issue.record("the writer wrote 2 MB into a request that failed")
            return
        }
        #expect(!"\(error)".contains("watchdog"), "the writer kept waiting")
    }

    /// A receiver that blocks (its output paused) holds back its own call and no other: as many
    /// calls as NIO has shared event loops block until one more has finished; were it held back
    /// by them, it never would. Waits happen on threads of their own, never Swift's few.
    @Test(arguments: Kind.allCases) func aBlockedReceiverHoldsBackOnlyItsOwnCall(kind: Kind) async throws {
        let body = String(repeating: "r", count: 1000)
        let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { server.stop() }
        let endpoint = HTTPEndpoint(.unix(path: server.path))
        let count = NIOCore.System.coreCount
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let blocked = (0..<count).map { _ in
            Task {
                try await kind.make(endpoint).receive(HTTPRequest(method: "GET", path: "/slow")) { _ in
                    holding.signal()
                    _ = release.wait(timeout: .now() + 60)
                }
            }
        }
        defer { for _ in 0..<count { release.signal() } }
        for _ in 0..<count {
            let held = await Self.offThePool { holding.wait(timeout: .now() + 30) == .success }
            try #require(held, "a blocked call never reached its receiver")
        }
        let free = try await Self.within(.seconds(30)) {
            _ = try await kind.make(endpoint).receive(HTTPRequest(method: "GET", path: "/fast")) { _ in }
        }
        for _ in 0..<count { release.signal() }
        #expect(free == .returned, "a blocked receiver held back another call")
        for call in blocked { _ = try await call.value }
    }

    /// An error answer's body of any size gives its message, as the server sent it.
    @Test(arguments: Kind.allCases) func aLongErrorAnswerKeepsItsMessage(kind: Kind) async throws {
        let message = #"{"error":"#  + String(repeating: "e", count: 100_000) + "}"
        let server = try FakeServer(response: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: \(message.utf8.count)\r\n\r\n\(message)")
        defer { server.stop() }
        let response = try await kind.make(HTTPEndpoint(.unix(path: server.path))).receive(HTTPRequest(method: "POST", path: "/call")) { _ in }
        #expect(response.status == 500)
        #expect(response.body.count >= 65536 && message.utf8.starts(with: response.body))
    }

    /// How the certificate's DNS names are matched with a host name.
    @Test func wildcardsNameOneLabelUnderTwo() {
        #expect(ExchangeHandler.dnsName("Manager.Example.com", names: "manager.example.com"))
        #expect(ExchangeHandler.dnsName("*.example.com", names: "manager.example.com"))
        #expect(!ExchangeHandler.dnsName("*.example.com", names: "example.com"))
        #expect(!ExchangeHandler.dnsName("*.example.com", names: "a.manager.example.com"))
        #expect(!ExchangeHandler.dnsName("*.com", names: "manager.com"))
        #expect(!ExchangeHandler.dnsName("*.example.com", names: "xn--mnchen-3ya.example.com"))
        #expect(!ExchangeHandler.dnsName("manager.example.com", names: "manager.example.org"))
    }

    /// A header NIO will not send (a line break in its value) fails the request instead of
    /// leaving it waiting for an answer to what was never sent.
    @Test func anUnsendableRequestFails() async throws {
        let server = try FakeServer(response: nil)
        defer { server.stop() }
        let request = HTTPRequest(method: "GET", path: "/", headers: [(name: "X-Token", value: "a\r\nInjected: yes")])
        let outcome = try await Self.within(.seconds(30)) {
            _ = try await NIOTransport(endpoint: HTTPEndpoint(.unix(path: server.path))).stream(request, streamErrorResponses: true)
        }
        #expect(outcome == .threw)
    }

    enum Outcome: Equatable { case returned, threw, timedOut }

    /// Runs blocking `work` on a thread of its own, never on one of Swift's few.
    static func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: work()) }.start()
        }
    }

    /// How `work` ends within `limit`.
    static func within(_ limit: Duration, _ work: @escaping @Sendable () async throws -> Void) async throws -> Outcome {
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            group.addTask {
                do { try await work(); return .returned } catch { return .threw }
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return .timedOut
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
    }

    /// A certificate of `authority` naming `name` among its DNS names, and no address.
    static func certificate(naming name: String, authority: (certificate: String, key: String)) throws -> (certificate: String, key: String) {
        let caCertificate = try Certificate(pemEncoded: authority.certificate)
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: Date() - 300, notValidAfter: Date() + 86_400,
            issuer: caCertificate.subject, subject: try DistinguishedName { CommonName(name) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName(name)])
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: try Certificate.PrivateKey(pemEncoded: authority.key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }

    @Test(arguments: Kind.allCases) func aServerSpeakingNoTLSIsNoTLSSession(kind: Kind) async throws {
        let server = try await RecordingServer(tls: nil)
        defer { server.stop() }
        let authority = try ClusterCertificates.makeAuthority()
        await #expect {
            _ = try await kind.make(HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port), tls: ClientTLS(trustedCAs: authority.certificate)))
                .send(HTTPRequest(method: "GET", path: "/", timeout: .seconds(30)))
        } throws: { error in
            guard case HTTPClientError.tlsFailed = error else { return false }
            return true
        }
        #expect(!String(decoding: server.received, as: UTF8.self).contains("GET /"))
    }

    /// The probe shows a server's certificate without trusting it, and nothing for a plain one.
    @Test func theProbeReadsTheCertificateAndOnlyOverTLS() async throws {
        let selfSigned = try ClusterCertificates.makeSelfSigned(address: "127.0.0.1")
        let tls = try await RecordingServer(tls: (selfSigned.certificate, selfSigned.key))
        defer { tls.stop() }
        let pem = try #require(await TLSProbe.certificate(host: "127.0.0.1", port: tls.port, timeout: .seconds(30)))
        #expect(try KeyFingerprint(certificatePEM: pem) == selfSigned.fingerprint)
        let plain = try await RecordingServer(tls: nil)
        defer { plain.stop() }
        #expect(await TLSProbe.certificate(host: "127.0.0.1", port: plain.port, timeout: .seconds(30)) == nil)
        #expect(await TLSProbe.certificate(host: "127.0.0.1", port: try freePort()) == nil)
    }

    /// A request that keeps its connection hands it to the next request, which goes on it: the
    /// server that answered the first is the one that gets the second (`berth login` checks
    /// who answers before it sends a password). Without it, each request has a connection.
    @Test func aKeptConnectionCarriesTheNextRequestAndOnlyThat() async throws {
        let server = try await RecordingServer(tls: nil, answering: .keepingAlive)
        defer { server.stop() }
        let transport = NIOTransport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port)))
        var check = HTTPRequest(method: "GET", path: "/check", timeout: .seconds(30))
        check.keepsConnection = true
        #expect(try await transport.send(check).body == Data("ok".utf8))
        let secret = HTTPRequest(method: "POST", path: "/secret", body: .data(Data("pw".utf8), contentType: "text/plain"), timeout: .seconds(30))
        #expect(try await transport.send(secret).body == Data("ok".utf8))
        #expect(server.connections == 1)
        #expect(try await transport.send(HTTPRequest(method: "GET", path: "/third", timeout: .seconds(30))).body == Data("ok".utf8))
        #expect(server.connections == 2, "only the request that kept the connection passes it on")
        #expect(server.requests == 3)
    }

    /// A kept connection the server closes as the next request comes (its idle timeout) gives
    /// way to a new one, and the request is answered there; so does one it said it would close.
    @Test func aKeptConnectionTheServerDropsGivesWayToANewOne() async throws {
        for answering in [RecordingServer.Answering.droppingSecond, .closing] {
            let server = try await RecordingServer(tls: nil, answering: answering)
            defer { server.stop() }
            let transport = NIOTransport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port)))
            var check = HTTPRequest(method: "GET", path: "/check", timeout: .seconds(30))
            check.keepsConnection = true
            _ = try await transport.send(check)
            let next = HTTPRequest(method: "POST", path: "/next", body: .data(Data("x".utf8), contentType: "text/plain"), timeout: .seconds(30))
            #expect(try await transport.stream(next, streamErrorResponses: false).head.status == 200, "\(answering)")
            #expect(server.connections == 2, "\(answering)")
            // The dropped request reached the server on the kept connection before going again.
            #expect(server.requests == (answering == .droppingSecond ? 3 : 2), "\(answering)")
        }
    }

    /// A kept TLS connection carries the next request without a second handshake, its server
    /// checked once.
    @Test func aKeptTLSConnectionCarriesTheNextRequest() async throws {
        let authority = try ClusterCertificates.makeAuthority()
        let host = try ClusterCertificates.makeHost(addresses: ["127.0.0.1"], manager: false, authority: authority)
        let server = try await RecordingServer(tls: host, answering: .keepingAlive)
        defer { server.stop() }
        let transport = NIOTransport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port), tls: ClientTLS(trustedCAs: authority.certificate)))
        var check = HTTPRequest(method: "GET", path: "/check", timeout: .seconds(30))
        check.keepsConnection = true
        _ = try await transport.send(check)
        #expect(try await transport.send(HTTPRequest(method: "GET", path: "/next", timeout: .seconds(30))).body == Data("ok".utf8))
        #expect(server.connections == 1)
    }

    /// A reader that stops reading holds the connection back once a window is unread, and lets
    /// it go on once it has caught up.
    @Test func aSlowReaderHoldsReadingBack() async throws {
        let exchange = Exchange(request: HTTPRequest(method: "GET", path: "/"), endpoint: .unix("/x"), window: 1000, sink: nil)
        #expect(exchange.mayRead())
        exchange.received(body: Data(count: 600))
        #expect(exchange.mayRead())
        exchange.received(body: Data(count: 600))
        #expect(!exchange.mayRead(), "read on past the window")
        _ = try await exchange.next()
        #expect(exchange.mayRead())
        exchange.ended()
        #expect(try await exchange.next()?.count == 600)
        #expect(try await exchange.next() == nil)
    }

}

/// A server on 127.0.0.1 (TLS with the given certificate, or plain) that records what it is sent
/// and answers every request head with a 200.
final class RecordingServer: Sendable {
    let channel: any Channel
    let port: Int
    private final class Log: Sendable {
        let state = Mutex<(bytes: [UInt8], requests: Int, connections: Int)>(([], 0, 0))
    }
    private let log = Log()

    /// What becomes of a connection once its request is answered.
    enum Answering: Sendable {
        /// `Connection: close`, and closed.
        case closing
        /// Kept open for the next request, as HTTP/1.1 does unless told otherwise.
        case keepingAlive
        /// Kept open, but closed unanswered at its second request, as a server whose idle
        /// timeout struck just as that request came.
        case droppingSecond
    }

    var received: [UInt8] { log.state.withLock { $0.bytes } }
    var requests: Int { log.state.withLock { $0.requests } }
    var connections: Int { log.state.withLock { $0.connections } }

    init(tls: (certificate: String, key: String)?, answering: Answering = .closing) async throws {
        let context = try tls.map { tls in
            try NIOSSLContext(configuration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(tls.certificate.utf8)).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(tls.key.utf8), format: .pem))))
        }
        let recorder: @Sendable ([UInt8]) -> Bool = { [log] bytes in
            log.state.withLock { log in
                log.bytes += bytes
                // A request is whole once its head and Content-Length bytes of body are in.
                let text = String(decoding: log.bytes, as: UTF8.self)
                let requests = text.components(separatedBy: "\r\n\r\n")
                guard requests.count - 1 > log.requests else { return false }
                let head = requests[log.requests]
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                guard requests[(log.requests + 1)...].joined(separator: "\r\n\r\n").utf8.count >= length else { return false }
                log.requests += 1
                return true
            }
        }
        (channel, port) = try await loopbackServer { [log] child in
            log.state.withLock { $0.connections += 1 }
            if let context { try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
            try child.pipeline.syncOperations.addHandler(Recorder(recorder, answering: answering))
        }
    }

    func stop() {
        channel.close(promise: nil)
    }

    private final class Recorder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let record: @Sendable ([UInt8]) -> Bool
        let answering: Answering
        private var answered = 0

        init(_ record: @escaping @Sendable ([UInt8]) -> Bool, answering: Answering) {
            self.record = record
            self.answering = answering
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(unwrapInboundIn(data).readableBytesView)
            if bytes.first == 0x16 {
                // A TLS handshake sent to a plain server: answered as a web server would.
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))).whenComplete { _ in context.close(promise: nil) }
                return
            }
            guard record(bytes) else { return }
            answered += 1
            switch answering {
            case .closing:
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).whenComplete { _ in context.close(promise: nil) }
            case .droppingSecond where answered > 1:
                context.close(promise: nil)
            case .keepingAlive, .droppingSecond:
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), promise: nil)
            }
        }
    }
}

/// The daemons' transport to an agent over TLS: a connection it makes on a worker that never
/// connected before resumes the session another worker's connection made. TLS 1.3 tickets are
/// used once: each connection brings the next with its answer.
@Suite struct TLSResumptionTests {
    @Test func aNewWorkerResumesTheSessionAnotherMade() async throws {
        let authority = try ClusterCertificates.makeAuthority()
        let agent = try ClusterCertificates.makeHost(addresses: ["127.0.0.1"], manager: false, authority: authority)
        let manager = try ClusterCertificates.makeHost(addresses: ["127.0.0.9"], manager: true, authority: authority)
        let server = try await HandshakeCountingServer(certificate: agent, clientCA: authority.certificate)
        defer { server.stop() }
        let transport = Transport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: server.port), tls: ClientTLS(
            trustedCAs: authority.certificate, clientCertificate: manager.certificate, clientKey: manager.key)), connectTimeout: .seconds(30))
        let request = HTTPRequest(method: "GET", path: "/", timeout: .seconds(30))
        #expect(try await transport.send(request).status == 200)
        #expect(server.fullHandshakes == 1)
        // A stream runs on a worker of the streams' own pool, which has not connected yet; the
        // server closed the first connection after its answer.
        let stream = try await transport.stream(request, streamErrorResponses: false)
        for try await _ in stream.body {}
        #expect(try await transport.send(request).status == 200)
        #expect(server.connections == 3)
        #expect(server.fullHandshakes == 1, "a connection of a worker without a session of its own made a full handshake")
    }
}

/// A TLS server on 127.0.0.1 that wants a client certificate of `clientCA`, counts the handshakes
/// that checked one (a resumed session checks none), answers each request and closes the
/// connection.
final class HandshakeCountingServer: Sendable {
    let channel: any Channel
    let port: Int
    private final class Counts: Sendable {
        let state = Mutex<(connections: Int, fullHandshakes: Int)>((0, 0))
    }
    private let counts = Counts()
    var connections: Int { counts.state.withLock { $0.connections } }
    var fullHandshakes: Int { counts.state.withLock { $0.fullHandshakes } }

    init(certificate: (certificate: String, key: String), clientCA: String) async throws {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(certificate.certificate.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(certificate.key.utf8), format: .pem)))
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(clientCA.utf8)))
        configuration.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: configuration)
        let counts = counts
        (channel, port) = try await loopbackServer { child in
            counts.state.withLock { $0.connections += 1 }
            try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context) { certificates, promise in
                counts.state.withLock { $0.fullHandshakes += 1 }
                promise.succeed(certificates.isEmpty ? .failed : .certificateVerified)
            })
            try child.pipeline.syncOperations.addHandler(Answerer())
        }
    }

    func stop() {
        channel.close(promise: nil)
    }

    private final class Answerer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private var received = ""

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            guard received.contains("\r\n\r\n") else { return }
            received = ""
            let answer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            context.writeAndFlush(wrapOutboundOut(answer)).whenComplete { _ in context.close(promise: nil) }
        }
    }
}

/// A server on 127.0.0.1, on a port of the system's choosing; `prepare` sets up each connection.
func loopbackServer(_ prepare: @escaping @Sendable (any Channel) throws -> Void) async throws -> (channel: any Channel, port: Int) {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { child in child.eventLoop.makeCompletedFuture { try prepare(child) } }
        .bind(host: "127.0.0.1", port: 0).get()
    return (channel, channel.localAddress?.port ?? 0)
}
