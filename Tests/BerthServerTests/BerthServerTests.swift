import BerthAPI
import BerthCore
import BerthServer
import Foundation
import HTTPClient
import Hummingbird
import HummingbirdTesting
import Synchronization
import TestSupport
import Testing

/// What both daemons' servers share, in-process: the route helpers, one-line JSON errors, bounded
/// bodies and the signature check.
// One test at a time: the raw-socket tests hold threads while they wait, and a live server
// beside them, starved on two loaded cores, once left the streamed-body test hanging.
@Suite(.serialized) struct BerthServerTests {
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
                ("too large", ByteBuffer(repeating: UInt8(ascii: " "), count: 64 * 1024 + 1), 413, "request body is larger than this route's 64 KiB"),
            ]
            for (name, body, status, message) in cases {
                let response = try await client.execute(uri: "/v1/open/echo", method: .post, body: body)
                #expect(response.status.code == status, "\(name)")
                #expect(String(buffer: response.body) == "{\"error\":\"\(message)\"}", "\(name)")
                // The rest of a refused body is never read: the connection ends with the answer.
                #expect((response.headers[.connection] == "close") == (status == 413 || name == "not JSON" && false), "\(name)")
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
            // A body swapped under a good head: refused once read, as it does not match the signed digest.
            let swapped = try await client.execute(uri: Self.echo.path, method: .post, headers: headers(Self.secret), body: try json(EndSessionRequest(user: "bbb")))
            #expect(swapped.status == .unauthorized)
            #expect(String(buffer: swapped.body) == #"{"error":"unauthorized: request body does not match its signed digest"}"#)
            let newer = try await client.execute(uri: Self.echo.path, method: .post, headers: headers(Self.secret, version: "9.0.0 (wire 9)"), body: body)
            #expect(newer.status.code == 426)
            #expect(String(buffer: newer.body).contains("the sender Berth 9.0.0 (wire 9)"))
        }
    }

    /// A live server with small limits, and its port.
    func withLiveServer(_ limits: ConnectionLimits, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
        try await withLiveServer(limits) { port, _ in try await body(port) }
    }

    /// The same, with its connection counter at hand.
    func withLiveServer(_ limits: ConnectionLimits, _ body: @escaping @Sendable (Int, ConnectionCounter) async throws -> Void) async throws {
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.on(Route<NoBody, UnitList>(.get, "/v1/open/plain")) { _, _ in UnitList(units: []) }
        // A forced login: its answer may take long, its password makes it the user's, and the
        // user's old session ends (its trust with it) while the answer is on its way.
        // A request a user's token authenticates, as the manager's routes do.
        router.get("/v1/open/owned") { _, context -> String in
            context.channel.markAuthenticated(owner: "someone")
            return "yours"
        }
        // An answer larger than any socket's buffers.
        router.get("/v1/open/large") { _, _ in String(repeating: "x", count: 1 << 20) }
        // An answer that waits its turn past the request deadline, as a login behind other
        // logins' password checks does.
        // With `owner`, a forced login: its password makes it the user's, and the user's old
        // session ends (its trust with it) while the answer is on its way.
        router.get("/v1/open/queued") { request, context -> String in
            await context.channel.answerMayTakeLong()
            if let owner = request.uri.queryParameters["owner"] { context.channel.markAuthenticated(owner: String(owner)) }
            Self.queuedStarted.store(true, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(3500))
            return "served"
        }
        // Each piece of the body back as it comes: the answer runs beside the request.
        router.post("/v1/open/duplex") { request, context -> Response in
            context.channel.requestMayLast()
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: ResponseBody { writer in
                for try await piece in request.body { try await writer.write(piece) }
                try await writer.finish(nil)
            })
        }
        let signed = router.group().add(middleware: SignatureMiddleware(verifier: RequestVerifier(secret: Self.secret, audience: "127.0.0.1:9000")))
        signed.on(Self.echo) { end, _, _ in end }
        let counter = ConnectionCounter(limits: limits)
        let app = Application(router: router, server: daemonServer(tls: nil, counter: counter), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body(client.port!, counter) }
    }

    /// A stranger's request is refused on its head: the server answers without waiting for the
    /// 10 MB body the head announces, and closes.
    @Test func anUnsignedRequestIsRefusedBeforeItsBodyIsRead() async throws {
        // A deadline far off, so that what closes the connection is the refusal, however slowly a
        // machine busy starting fifty suites answers.
        var limits = ConnectionLimits()
        limits.requestDeadline = .seconds(120)
        try await withLiveServer(limits) { port in
            let socket = try RawSocket(port: port)
            try socket.send("POST \(Self.echo.path) HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{")
            // Answered and closed at once; the timeout only bounds a failure, on a machine the
            // rest of the suite keeps busy.
            let answer = await socket.readAll(timeout: 60)
            #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
            #expect(answer.lowercased().contains("connection: close"))
            #expect(socket.closedByPeer)
        }
    }

    /// Slowloris: a connection that sends nothing, or a head a byte at a time, is closed at the
    /// request deadline; a client that asks in time is served.
    @Test func slowSendersAreClosedAtTheDeadline() async throws {
        var limits = ConnectionLimits()
        limits.requestDeadline = .milliseconds(1500)
        try await withLiveServer(limits) { port in
            let clock = ContinuousClock()
            let start = clock.now
            let silent = try RawSocket(port: port)
            let trickler = try RawSocket(port: port)
            let head = Array("GET /v1/open/plain HTTP/1.1\r\nHost: x\r\nX-Pad: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 100)
            var sent = 0
            for byte in head where !trickler.closedByPeer && clock.now - start < .seconds(10) {
                try? trickler.send(String(decoding: [byte], as: UTF8.self))
                sent += 1
                try await Task.sleep(for: .milliseconds(50))
                _ = await trickler.readAll(timeout: 0)
            }
            #expect(trickler.closedByPeer)
            // Cut off at the deadline (1.5 s, about 30 bytes in), long before the whole head
            // (7.5 s at this pace), however busy the machine; a wall-clock bound flaked at 8.9 s.
            #expect(sent < head.count, "trickled head cut off after \(sent) of \(head.count) bytes, at \(clock.now - start)")
            _ = await silent.readAll(timeout: 10)
            #expect(silent.closedByPeer)
            // A client that asks at once is served; on a machine so busy that even its request
            // outlasts the short deadline of this test, it asks again.
            var answer = ""
            for _ in 0..<5 where !answer.hasPrefix("HTTP/1.1 200") {
                let fine = try RawSocket(port: port)
                try fine.send("GET /v1/open/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = await fine.readAll(timeout: 20)
            }
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        }
    }

    /// A stranger who sends requests and never reads the answers is closed at the request
    /// deadline: the answer it does not read would otherwise hold the connection for good.
    @Test func aStrangerWhoStopsReadingIsClosedAtTheDeadline() async throws {
        var limits = ConnectionLimits()
        limits.requestDeadline = .milliseconds(1500)
        try await withLiveServer(limits) { port in
            let socket = try RawSocket(port: port, receiveBuffer: 1024)
            var sent = 0
            while sent < 20, socket.sendWithoutWaiting("GET /v1/open/large HTTP/1.1\r\nHost: x\r\n\r\n") { sent += 1 }
            try await Task.sleep(for: .seconds(5))
            // Read only now: what the server wrote before it closed, then the end.
            let read = await socket.readAll(timeout: 5)
            #expect(socket.closedByPeer, "a stranger not reading kept its connection (\(sent) requests sent, \(read.utf8.count) bytes read: \(read.prefix(300)))")
        }
    }

    /// A stranger's connection idles no longer than a request may take, even with the start of
    /// a next request sent in the same packet as the one answered.
    @Test func aStrangersHalfSentNextRequestIsClosedAtTheDeadline() async throws {
        var limits = ConnectionLimits()
        limits.requestDeadline = .milliseconds(1500)
        try await withLiveServer(limits) { port in
            let socket = try RawSocket(port: port)
            try socket.send("GET /v1/open/plain HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/op")
            let answer = await socket.readAll(timeout: 10)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            #expect(socket.closedByPeer, "kept past the request deadline, toward the idle timeout (60 s)")
        }
    }

    /// A body written while its answer comes back: each line is echoed before the next is
    /// written, which only a request and answer running side by side allow; and the request
    /// may outlast the request deadline once its route has taken it.
    @Test(.timeLimit(.minutes(1))) func aStreamedBodyAndItsAnswerGoOnTogether() async throws {
        var limits = ConnectionLimits()
        // Long enough that a route run late on a loaded machine still takes the request first.
        limits.requestDeadline = .seconds(6)
        try await withLiveServer(limits) { port in
            let transport = Transport(endpoint: HTTPEndpoint(.tcp(host: "127.0.0.1", port: port)))
            let upload = UploadStream()
            let response = try await transport.stream(HTTPClient.HTTPRequest(
                method: "POST", path: "/v1/open/duplex", body: .stream(upload, contentType: "application/octet-stream")))
            #expect(response.head.status == 200)
            var answers = response.body.makeAsyncIterator()
            for index in 0..<5 {
                let line = Data("line \(index)\n".utf8)
                try await upload.write(line)
                var echoed = Data()
                while echoed.count < line.count, let piece = try await answers.next() { echoed += piece }
                #expect(echoed == line)
                // Past the 6 s deadline by the end.
                try await Task.sleep(for: .milliseconds(1500))
            }
            upload.finish()
            #expect(try await answers.next() == nil)
        }
    }

    /// Set by the `/v1/open/queued` route as it starts.
    static let queuedStarted = Atomic<Bool>(false)

    /// A stranger's answer that may take long (a login waiting for its password check) is
    /// neither cut at the request deadline nor made to give way to a newer connection: with one
    /// place per address, the newer one is refused instead.
    @Test func anAnswerThatMayTakeLongIsNeitherCutNorGivenAway() async throws {
        try await expectLongAnswerKeepsItsPlace("/v1/open/queued")
    }

    /// Sends `path`, whose answer may take long, with one place per address; once its route runs,
    /// does `meanwhile`; then a newer connection from the same address is refused, and the answer
    /// comes whole past the 2 s request deadline.
    func expectLongAnswerKeepsItsPlace(_ path: String, meanwhile: @escaping @Sendable (ConnectionCounter) async throws -> Void = { _ in }) async throws {
        var limits = ConnectionLimits()
        limits.requestDeadline = .seconds(2)
        limits.perAddress = 1
        Self.queuedStarted.store(false, ordering: .relaxed)
        try await withLiveServer(limits) { port, counter in
            // From an address of their own: the test client's own connection, made as it likes,
            // would otherwise take the one place.
            let queued = try RawSocket(port: port, from: "127.0.0.5")
            try queued.send("GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            // Once its route has said so (a busy machine may take a while to get there).
            for _ in 0..<500 where !Self.queuedStarted.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
            try await meanwhile(counter)
            let newer = try RawSocket(port: port, from: "127.0.0.5")
            _ = await newer.readAll(timeout: 10)
            #expect(newer.closedByPeer, "the newer connection was let in")
            let answer = await queued.readAll(timeout: 20)
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix("served"), "\(answer)")
        }
    }

    /// One user's token buys a few trusted places, not every one: past the user's share its
    /// connections are strangers' and give way to newcomers, so one user cannot keep every other
    /// out of the manager; and once the user's session ends, the places it won are strangers'
    /// again and go at the stranger's idle deadline.
    @Test func oneUsersConnectionsHoldOnlyTheirShareAndLoseItWithTheSession() async throws {
        var limits = ConnectionLimits()
        limits.total = 6
        limits.perUser = 2
        limits.requestDeadline = .seconds(3)
        try await withLiveServer(limits) { port, counter in
            var held: [RawSocket] = []
            for _ in 0..<6 {
                let socket = try RawSocket(port: port, from: "127.0.0.6")
                try socket.send("GET /v1/open/owned HTTP/1.1\r\nHost: x\r\n\r\n")
                _ = await socket.readAll(timeout: 0.05)
                held.append(socket)
            }
            // Every place is taken; a newcomer still gets in, in the place of one beyond the share.
            let newcomer = try RawSocket(port: port, from: "127.0.0.7")
            try newcomer.send("GET /v1/open/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let answer = await newcomer.readAll(timeout: 10)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            // The two trusted ones are still open past the stranger's deadline; the session's
            // end makes them strangers', and they go at the next.
            _ = await held[0].readAll(timeout: 3.5)
            _ = await held[1].readAll(timeout: 0.1)
            #expect(!held[0].closedByPeer && !held[1].closedByPeer)
            counter.distrust(owner: "someone")
            _ = await held[0].readAll(timeout: 6)
            _ = await held[1].readAll(timeout: 6)
            #expect(held[0].closedByPeer && held[1].closedByPeer)
        }
    }

    /// A forced login ends the user's old session, and with it the trust of the user's
    /// connections, its own among them: its answer still gives way to no newer connection.
    @Test func aForcedLoginsAnswerOutlivesTheEndOfTheUsersTrust() async throws {
        try await expectLongAnswerKeepsItsPlace("/v1/open/queued?owner=someone") { counter in
            try await Task.sleep(for: .milliseconds(100))
            counter.distrust(owner: "someone")
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// One address holds no more strangers' connections than its limit (3 here): a fourth takes
    /// the place of the oldest, so a client that authenticates at once (the manager reaching an
    /// agent from an address a hostile unit's traffic shares) is never shut out by older ones.
    @Test func connectionsPerAddressAreCappedByGivingWayToNewOnes() async throws {
        var limits = ConnectionLimits()
        limits.perAddress = 3
        try await withLiveServer(limits) { port in
            var held: [RawSocket] = []
            for _ in 0..<3 {
                held.append(try RawSocket(port: port))
                try await Task.sleep(for: .milliseconds(100))
            }
            let extra = try RawSocket(port: port)
            try extra.send("GET /v1/open/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            let answer = await extra.readAll(timeout: 20)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
            _ = await held[0].readAll(timeout: 5)
            #expect(held[0].closedByPeer, "the oldest stranger's connection gave way")
            for socket in held.dropFirst() {
                _ = await socket.readAll(timeout: 0.2)
                #expect(!socket.closedByPeer)
            }
        }
    }
}
