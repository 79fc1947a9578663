import Foundation
import Synchronization
import TestSupport
import Testing
@testable import HTTPClient

/// `Transport.receive`: the body handed over piece by piece on the transfer's thread.
@Suite struct ReceiveTests {
    /// Gathers what a receiver is handed.
    final class Pieces: Sendable {
        let state = Mutex<(bytes: [UInt8], count: Int)>(([], 0))
        func take(_ piece: UnsafeRawBufferPointer) {
            state.withLock { $0.bytes += piece; $0.count += 1 }
        }
    }

    struct Refusal: Error, Equatable {}

    @Test func aLongBodyArrivesWholeInPieces() async throws {
        let body = String((0..<600_000).map { _ in "abcdefghij".randomElement()! })
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { engine.stop() }
        let pieces = Pieces()
        let response = try await Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)))
            .receive(HTTPRequest(method: "GET", path: "/logs")) { pieces.take($0) }
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        let received = pieces.state.withLock { $0 }
        #expect(received.bytes == Array(body.utf8))
        #expect(received.count > 1)
    }

    @Test func anErrorStatusKeepsItsBodyForTheMessage() async throws {
        let message = #"{"message":"no such container: x"}"#
        let engine = try FakeServer(response: "HTTP/1.1 404 Not Found\r\nContent-Length: \(message.utf8.count)\r\n\r\n\(message)")
        defer { engine.stop() }
        let pieces = Pieces()
        let response = try await Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)))
            .receive(HTTPRequest(method: "GET", path: "/logs")) { pieces.take($0) }
        #expect(response.status == 404)
        #expect(String(decoding: response.body, as: UTF8.self) == message)
        #expect(pieces.state.withLock { $0.count } == 0)
    }

    @Test func whatTheReceiverThrowsEndsTheTransferAndComesBack() async throws {
        let body = String(repeating: "x", count: 600_000)
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { engine.stop() }
        let pieces = Pieces()
        await #expect(throws: Refusal()) {
            _ = try await Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)))
                .receive(HTTPRequest(method: "GET", path: "/logs")) { piece in
                    pieces.take(piece)
                    throw Refusal()
                }
        }
        #expect(pieces.state.withLock { $0.count } == 1)
    }

    /// TLS that trusts no CA and pins no key would check nothing: refused before connecting.
    @Test func tlsThatChecksNothingIsRefused() async throws {
        let transport = Transport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: 9), tls: ClientTLS()))
        await #expect {
            _ = try await transport.send(HTTPRequest(method: "GET", path: "/", timeout: .seconds(2)))
        } throws: { error in
            "\(error)".contains("TLS with neither a trusted CA nor a pinned key")
        }
    }
}

/// `Transport.startWithoutTLS`, in a process of its own: OpenSSL started so cannot check a
/// certificate, so TLS endpoints are refused outright rather than reached unchecked, while
/// plain requests go on as before.
@Suite struct StartWithoutTLSTests {
    @Test func tlsIsRefusedAndPlainRequestsWork() async {
        await #expect(processExitsWith: .success) {
            guard Transport.startWithoutTLS() else { exit(2) }
            let server = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            defer { server.stop() }
            let plain = try await Transport(endpoint: HTTPEndpoint(.unix(path: server.path))).send(HTTPRequest(method: "GET", path: "/"))
            guard plain.status == 200 else { exit(3) }
            guard let refusal = await Self.tlsFailure() else { exit(4) }
            exit(refusal.contains("a process that started libcurl without TLS") ? 0 : 5)
        }
    }

    /// Why a TLS request to a closed port failed; nil if it did not.
    static func tlsFailure() async -> String? {
        let tls = Transport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: 9), tls: ClientTLS(pinnedKey: "sha256//AAAA")))
        do {
            _ = try await tls.send(HTTPRequest(method: "GET", path: "/", timeout: .seconds(2)))
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Once libcurl has started with TLS, it is too late to start without.
    @Test func tooLateOnceStarted() async {
        await #expect(processExitsWith: .success) {
            _ = Transport(endpoint: HTTPEndpoint(.unix(path: "/nonexistent")))
            exit(Transport.startWithoutTLS() || Transport.startWithoutExitCleanup() ? 1 : 0)
        }
    }

    /// A daemon's OpenSSL, started without its clean-up at exit, still does TLS: an endpoint
    /// is tried (and found closed), not refused, and the process exits cleanly with workers
    /// that have just ended.
    @Test func withoutExitCleanupTLSStillWorks() async {
        await #expect(processExitsWith: .success) {
            guard Transport.startWithoutExitCleanup() else { exit(2) }
            guard let failure = await Self.tlsFailure() else { exit(3) }
            exit(failure.contains("without TLS") ? 4 : 0)
        }
    }
}
