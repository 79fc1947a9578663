import BerthAPI
import BerthCore
import BerthServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// What both daemons' servers share, in-process: the route helpers, one-line JSON errors, bounded
/// bodies and the signature check.
@Suite struct BerthServerTests {
    static let secret = Array("berth-server-tests-secret-of-32-bytes".utf8)
    static let echo = Route<EndSessionRequest, EndSessionRequest>(.post, "/v1/echo")
    static let plain = Route<NoBody, UnitList>(.get, "/v1/plain")
    static let lines = Route<EndSessionRequest, JSONLines<ErrorBody>>(.post, "/v1/lines")

    /// A router serving test routes: `/v1/open/...` for anyone, the rest signed.
    func withServer(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.on(Route<NoBody, UnitList>(.get, "/v1/open/plain")) { _, _ in UnitList(units: []) }
        router.on(Route<EndSessionRequest, EndSessionRequest>(.post, "/v1/open/echo")) { end, _, _ in end }
        router.on(Route<EndSessionRequest, JSONLines<ErrorBody>>(.post, "/v1/open/lines")) { end, _, _, emit in
            for index in 1...3 { try await emit(ErrorBody(error: "\(end.user) \(index)")) }
        }
        let signed = router.group().add(middleware: SignatureMiddleware(verifier: RequestVerifier(secret: Self.secret, audience: "127.0.0.1:9000")))
        signed.on(Self.echo) { end, _, _ in end }
        try await Application(router: router).test(.router) { client in try await body(client) }
    }

    func json(_ value: some Encodable) throws -> ByteBuffer {
        ByteBuffer(bytes: try BerthJSON.encoder.encode(value))
    }

    @Test func routesDecodeTheirBodyAndEncodeTheirAnswer() async throws {
        try await withServer { client in
            let echoed = try await client.execute(uri: "/v1/open/echo", method: .post, body: try json(EndSessionRequest(user: "aaa")))
            #expect(echoed.status == .ok)
            #expect(try BerthJSON.decoder.decode(EndSessionRequest.self, from: Data(buffer: echoed.body)).user == "aaa")
            let plain = try await client.execute(uri: "/v1/open/plain", method: .get)
            #expect(String(buffer: plain.body) == #"{"units":[]}"#)
            let lines = try await client.execute(uri: "/v1/open/lines", method: .post, body: try json(EndSessionRequest(user: "bbb")))
            #expect(lines.headers[.contentType] == "application/x-ndjson")
            #expect(String(buffer: lines.body) == "{\"error\":\"bbb 1\"}\n{\"error\":\"bbb 2\"}\n{\"error\":\"bbb 3\"}\n")
        }
    }

    /// Whatever is wrong with a body, the answer is one JSON line naming it, never a 500.
    @Test func badBodiesGetA4xxNamingTheProblem() async throws {
        try await withServer { client in
            let cases: [(String, ByteBuffer, UInt, String)] = [
                ("wrong type", ByteBuffer(string: #"{"user": 42}"#), 400, #"request body field \"user\" has the wrong type"#),
                ("missing field", ByteBuffer(string: "{}"), 400, #"request body is missing \"user\""#),
                ("not JSON", ByteBuffer(string: "user=aaa"), 400, "request body is not valid JSON"),
                ("too large", ByteBuffer(repeating: UInt8(ascii: " "), count: (1 << 20) + 1), 413, "request body is larger than 1 MiB"),
            ]
            for (name, body, status, message) in cases {
                let response = try await client.execute(uri: "/v1/open/echo", method: .post, body: body)
                #expect(response.status.code == status, "\(name)")
                #expect(String(buffer: response.body) == "{\"error\":\"\(message)\"}", "\(name)")
            }
        }
    }

    @Test func signedRoutesRefuseUnsignedForgedAndOtherVersions() async throws {
        try await withServer { client in
            let body = try json(EndSessionRequest(user: "aaa"))
            let unsigned = try await client.execute(uri: Self.echo.path, method: .post, body: body)
            #expect(unsigned.status == .unauthorized)
            #expect(String(buffer: unsigned.body).contains("request is not signed"))

            func headers(_ secret: [UInt8], version: String? = nil) -> HTTPFields {
                var fields = HTTPFields()
                for header in RequestSigner(secret: secret).headers(method: "POST", target: Self.echo.path, audience: "127.0.0.1:9000", body: Data(buffer: body)) {
                    let value = header.name == RequestSigner.versionHeader ? (version ?? header.value) : header.value
                    fields.append(HTTPFields.Element(name: HTTPFields.Element.Name(header.name)!, value: value))
                }
                return fields
            }
            let good = try await client.execute(uri: Self.echo.path, method: .post, headers: headers(Self.secret), body: body)
            #expect(good.status == .ok)
            let forged = try await client.execute(
                uri: Self.echo.path, method: .post, headers: headers(Array("not the cluster secret, 32 bytes!!".utf8)), body: body)
            #expect(forged.status == .unauthorized)
            let newer = try await client.execute(uri: Self.echo.path, method: .post, headers: headers(Self.secret, version: "9.0.0 (wire 9)"), body: body)
            #expect(newer.status.code == 426)
            #expect(String(buffer: newer.body).contains("the sender Berth 9.0.0 (wire 9)"))
        }
    }
}
