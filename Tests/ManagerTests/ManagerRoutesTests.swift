import BerthConfig
import BerthAPI
import BerthCore
import BerthPasswords
import BerthServer
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import TestSupport
import Testing

@testable import Manager

/// The manager's HTTP API in-process, against a fake agent that speaks the agents' signed
/// protocol over loopback: logins, lockout, one session per user, rollback and tokens, with no
/// Docker engine.
@Suite(.serialized) struct ManagerRoutesTests {
    static let password = "s3cret-pass"
    static let secret = Array("manager-tests-secret-of-at-least-32-bytes".utf8)

    /// A manager for `users` (name, units' ports on the fake agent's host), and the fake agent.
    func withManager(
        _ users: [(String, [Int])], failing: Set<Int> = [], policy: Auth.Policy = Auth.Policy(), _ body: @escaping @Sendable (any TestClientProtocol, FakeAgent) async throws -> Void
    ) async throws {
        try await withManager(users, failing: failing, policy: policy) { client, agent, _ in try await body(client, agent) }
    }

    /// The same, with the manager's coordinator at hand.
    func withManager(
        _ users: [(String, [Int])], failing: Set<Int> = [], policy: Auth.Policy = Auth.Policy(), live: Bool = false,
        _ body: @escaping @Sendable (any TestClientProtocol, FakeAgent, Coordinator) async throws -> Void
    ) async throws {
        let agent = try await FakeAgent.shared()
        await agent.units.reset(failing: failing)
        let state = NSTemporaryDirectory() + "berth-manager-tests-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: state) }
        let hash = try PasswordHash.make(Self.password)
        let configs = try users.map { name, ports in
            UserConfig(
                name: name, password: .hash(hash), memory: try MemorySpec(parsing: "64m"), cpu: 512, home: "/opt/app/\(name)",
                units: ports.map { HostPort(host: FakeAgent.host, port: $0) })
        }
        let planner = Planner(communicationPort: agent.port, signer: RequestSigner(secret: Self.secret), readyTimeout: .seconds(5))
        let userList = UsersConfig(users: configs)
        let coordinator = Coordinator(
            users: userList, planner: planner, sessions: try SessionStore(stateDirectory: state), auth: Auth(users: userList, policy: policy),
            audit: Audit(stateDirectory: state), logger: Logger(label: "manager-tests"))
        let app = Application(router: ManagerController.router(coordinator: coordinator, verifier: RequestVerifier(secret: Self.secret, audience: "127.0.0.1:9000")))
        try await app.test(live ? .live : .router) { client in try await body(client, agent, coordinator) }
    }

    /// The login's JSON lines.
    func login(_ client: some TestClientProtocol, _ user: String, password: String = Self.password, force: Bool = false) async throws -> [LoginEvent] {
        let body = try BerthJSON.encoder.encode(LoginRequest(user: user, password: password, force: force))
        let response = try await client.execute(uri: "/v1/login", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(bytes: body))
        #expect(response.status == .ok)
        return try String(buffer: response.body).split(separator: "\n").map { try BerthJSON.decoder.decode(LoginEvent.self, from: Data($0.utf8)) }
    }

    func call(_ client: some TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String?) async throws -> (status: Int, text: String) {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        let response = try await client.execute(uri: uri, method: method, headers: headers, body: nil)
        return (Int(response.status.code), String(buffer: response.body))
    }

    @Test func aLoginStreamsEachUnitThenItsTokenWhichOpensStatusAndLogout() async throws {
        try await withManager([("aaa", [8281, 8282])]) { client, agent in
            let events = try await login(client, "aaa")
            #expect(events.filter { $0.kind == .unit && $0.state == .ready }.compactMap(\.unit?.port).sorted() == [8281, 8282])
            let done = try #require(events.last)
            #expect(done.kind == .done && done.units?.count == 2)
            let token = try #require(done.token)
            #expect(await agent.running == [8281, 8282])

            let status = try await call(client, .get, "/v1/status", token: token)
            #expect(status.status == 200)
            let parsed = try BerthJSON.decoder.decode(StatusResponse.self, from: Data(status.text.utf8))
            #expect(parsed.user == "aaa" && parsed.units.map(\.state) == ["running", "running"])

            #expect(try await call(client, .post, "/v1/logout", token: token).status == 200)
            #expect(await agent.running.isEmpty)
            let after = try await call(client, .get, "/v1/status", token: token)
            #expect(after.status == 401 && after.text.contains("your session has ended"))
        }
    }

    @Test func anUnknownNameAndAWrongPasswordGetTheSameAnswer() async throws {
        try await withManager([("aaa", [8281])]) { client, agent in
            let wrong = try await login(client, "aaa", password: "nope")
            let unknown = try await login(client, "zzz", password: "nope")
            #expect(wrong.map(\.kind) == [.failed] && unknown.map(\.kind) == [.failed])
            #expect(wrong.first?.message == "wrong user name or password")
            #expect(unknown.first?.message == wrong.first?.message)
            #expect(await agent.running.isEmpty)
        }
    }

    /// Failures lock a name for the address they come from: its owner elsewhere still logs in.
    @Test func aLockHoldsForTheFailingAddressOnly() async throws {
        let users = UsersConfig(users: [try Self.user("aaa")])
        let auth = Auth(users: users, policy: Auth.Policy(refusalTime: .zero))
        for _ in 0..<20 { _ = try? await auth.check(name: "aaa", password: "guess", from: "127.0.0.9", users: users) }
        await #expect(throws: LoginRefused.self) { try await auth.check(name: "aaa", password: Self.password, from: "127.0.0.9", users: users) }
        let owner = try await auth.check(name: "aaa", password: Self.password, from: "127.0.0.2", users: users)
        #expect(owner.name == "aaa")
    }

    /// Twenty guesses sent at once from one address: the lock still lets only five be checked.
    @Test func aBurstOfGuessesGetsNoMoreThanTheLockAllows() async throws {
        let users = UsersConfig(users: [try Self.user("aaa")])
        let auth = Auth(users: users, policy: Auth.Policy(refusalTime: .zero))
        let reasons = await withTaskGroup(of: LoginRefused.Reason?.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do {
                        _ = try await auth.check(name: "aaa", password: "guess", from: "127.0.0.9", users: users)
                        return nil
                    } catch {
                        return (error as? LoginRefused)?.reason
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(reasons.filter { $0 == .wrongCredentials }.count == 5)
        #expect(reasons.filter { $0 == .locked }.count == 15)
    }

    /// Guesses for one name spread over many addresses drain the name's bucket; then every address
    /// that has failed for the name waits, while one that has not still logs in.
    @Test func manyAddressesBuyFewGuessesForOneName() async throws {
        let users = UsersConfig(users: [try Self.user("aaa")])
        let auth = Auth(users: users, policy: Auth.Policy(nameBurst: 4, nameRefill: .seconds(3600), refusalTime: .zero))
        for index in 0..<4 { _ = try? await auth.check(name: "aaa", password: "guess", from: "127.0.1.\(index)", users: users) }
        do {
            _ = try await auth.check(name: "aaa", password: Self.password, from: "127.0.1.0", users: users)
            Issue.record("an address that failed was let in with the name's bucket empty")
        } catch let refused as LoginRefused {
            #expect(refused.reason == .locked)
            #expect(refused.description == "too many failed logins for this name from 127.0.1.0; try again later", "no end time to plan by")
        }
        #expect(try await auth.check(name: "aaa", password: Self.password, from: "127.0.0.2", users: users).name == "aaa")
    }

    /// A users' file written before Argon2id keeps working: its scrypt hashes still log in.
    @Test func anScryptHashStillLogsIn() async throws {
        var user = try Self.user("old")
        user.password = .hash(try PasswordHash.make(Self.password, .scrypt(rounds: 1 << 14, blockSize: 8, parallelism: 1)))
        let users = UsersConfig(users: [user])
        let auth = Auth(users: users, policy: Auth.Policy(refusalTime: .zero))
        #expect(try await auth.check(name: "old", password: Self.password, from: "127.0.0.2", users: users).name == "old")
        await #expect(throws: LoginRefused.self) { try await auth.check(name: "old", password: "wrong", from: "127.0.0.2", users: users) }
    }

    /// Each address has a bucket of attempts; a successful login gives its attempt back.
    @Test func anAddressHasABucketOfAttempts() async throws {
        let users = UsersConfig(users: [try Self.user("aaa")])
        let auth = Auth(users: users, policy: Auth.Policy(addressBurst: 3, addressPerSecond: 0.001, refusalTime: .zero))
        for _ in 0..<3 { #expect(await auth.admit(address: "127.0.0.9").admitted) }
        #expect(await auth.admit(address: "127.0.0.9") == (false, true))
        #expect(await auth.admit(address: "127.0.0.9") == (false, false), "the first refusal only is worth a log line")
        #expect(await auth.admit(address: "127.0.0.2").admitted, "another address has its own bucket")
        _ = try await auth.check(name: "aaa", password: Self.password, from: "127.0.0.9", users: users)
        #expect(await auth.admit(address: "127.0.0.9").admitted)
    }

    @Test func aThrottledAddressGetsA429BeforeItsBodyIsRead() async throws {
        try await withManager([("aaa", [8281])], policy: Auth.Policy(addressBurst: 2, addressPerSecond: 0.001, refusalTime: .zero)) { client, _ in
            for _ in 0..<2 { _ = try await login(client, "aaa", password: "nope") }
            // Not JSON at all: a throttled sender is refused before anything of the request is looked at.
            let response = try await client.execute(uri: "/v1/login", method: .post, headers: [:], body: ByteBuffer(string: "junk"))
            #expect(response.status == .tooManyRequests)
            #expect(String(buffer: response.body) == #"{"error":"too many login attempts from unknown; wait a minute and try again"}"#)
        }
    }

    static func user(_ name: String) throws -> UserConfig {
        UserConfig(
            name: name, password: .hash(try PasswordHash.make(password)), memory: try MemorySpec(parsing: "64m"), cpu: 512,
            home: "/opt/app/\(name)", units: [HostPort(host: FakeAgent.host, port: 8281)])
    }

    /// A login must say it is JSON, and a name no user could have is refused before any work.
    @Test func aLoginThatIsNotJSONOrHasAnOverlongNameIsRefusedUnread() async throws {
        try await withManager([("aaa", [8281])]) { client, agent in
            let body = ByteBuffer(bytes: try BerthJSON.encoder.encode(LoginRequest(user: "aaa", password: Self.password, force: false)))
            for headers: HTTPFields in [[:], [.contentType: "text/plain"], [.contentType: "application/x-www-form-urlencoded"]] {
                let response = try await client.execute(uri: "/v1/login", method: .post, headers: headers, body: body)
                #expect(response.status == .unsupportedMediaType)
                #expect(try BerthJSON.decoder.decode(ErrorBody.self, from: Data(buffer: response.body)).error == "send the request as JSON, with Content-Type: application/json")
            }
            let long = ByteBuffer(bytes: try BerthJSON.encoder.encode(LoginRequest(user: String(repeating: "a", count: 65), password: "x", force: false)))
            let response = try await client.execute(uri: "/v1/login", method: .post, headers: [.contentType: "application/json"], body: long)
            #expect(response.status == .badRequest)
            #expect(String(buffer: response.body) == #"{"error":"user name is longer than 64 bytes"}"#)
            #expect(await agent.running.isEmpty)
        }
    }

    /// Junk names by the thousand cannot grow the failure memory without bound; the names that
    /// failed last are kept, so a lock still holds.
    @Test func theFailureMemoryIsBoundedAndKeepsTheRecentNames() async throws {
        let users = UsersConfig(users: [])
        let auth = Auth(users: users, policy: Auth.Policy(refusalTime: .zero, remembered: 3))
        for index in 0..<10 { _ = try? await auth.check(name: "junk\(index)", password: "x", from: "127.0.0.9", users: users) }
        #expect(await auth.remembered.names <= 3)
        #expect(await auth.remembered.pairs <= 3)
        for _ in 0..<5 { _ = try? await auth.check(name: "target", password: "x", from: "127.0.0.9", users: users) }
        do {
            _ = try await auth.check(name: "target", password: "x", from: "127.0.0.9", users: users)
            Issue.record("the lock was forgotten")
        } catch let refused as LoginRefused {
            #expect(refused.reason == .locked)
        }
    }

    @Test func fiveFailuresLockTheNameEvenForTheRightPassword() async throws {
        try await withManager([("aaa", [8281])]) { client, _ in
            for _ in 0..<5 { _ = try await login(client, "aaa", password: "nope") }
            let locked = try await login(client, "aaa")
            #expect(locked.map(\.kind) == [.failed])
            #expect(locked.first?.message == "too many failed logins for this name from unknown; try again later")
        }
    }

    @Test func aSecondLoginIsRefusedUnlessForcedWhichEndsTheFirst() async throws {
        try await withManager([("aaa", [8281])]) { client, _ in
            let first = try #require(try await login(client, "aaa").last?.token)
            let second = try await login(client, "aaa")
            #expect(second.last?.kind == .failed)
            #expect(second.last?.message?.contains("aaa is already logged in since") == true)
            let forced = try await login(client, "aaa", force: true)
            #expect(forced.last?.kind == .done)
            #expect(try await call(client, .get, "/v1/status", token: first).status == 401)
            #expect(try await call(client, .get, "/v1/status", token: forced.last?.token).status == 200)
        }
    }

    @Test func aUnitThatFailsRollsTheWholeLoginBack() async throws {
        try await withManager([("aaa", [8281, 8282])], failing: [8282]) { client, agent in
            let events = try await login(client, "aaa")
            let failed = try #require(events.last)
            #expect(failed.kind == .failed)
            #expect(failed.message?.contains("unit \(FakeAgent.host):8282") == true, "\(failed.message ?? "")")
            #expect(failed.message?.contains("the fake engine says no") == true, "\(failed.message ?? "")")
            #expect(await agent.running.isEmpty)
            #expect(events.contains { $0.state == .removed && $0.unit?.port == 8281 })
        }
    }

    /// Copies reach only the session's own units: another user's, or none at all, is refused
    /// before any byte of the tar stream goes on.
    @Test func copiesToOrFromAUnitNotTheSessionsAreRefused() async throws {
        try await withManager([("aaa", [8281]), ("bbb", [8282])]) { client, _ in
            let token = try #require(try await login(client, "aaa").last?.token)
            let theirs = "unit=\(FakeAgent.host):8282&path=/app/data"
            let sent = try await client.execute(
                uri: "/v1/files?\(theirs)", method: .put, headers: [.authorization: "Bearer \(token)", .contentType: "application/x-tar"],
                body: ByteBuffer(bytes: [UInt8](repeating: 0, count: 1024)))
            #expect(sent.status == .forbidden && String(buffer: sent.body).contains("not one of your units"))
            #expect(try await call(client, .get, "/v1/files?\(theirs)", token: token).status == 403)
            #expect(try await call(client, .get, "/v1/files?unit=\(FakeAgent.host):8281&path=/app", token: nil).status == 401)
            #expect(try await call(client, .get, "/v1/files?path=/app", token: token).status == 400)
        }
    }

    /// An interactive exec holds one of its user's stream slots from its head on, before its
    /// opening frame is read, so a user's connections sending that frame slowly hold no more than
    /// the slots allow; and an opening frame larger than the route's body cap is refused on its
    /// announced size.
    @Test func anInteractiveExecTakesItsSlotBeforeItsFrameWhoseSizeIsCapped() async throws {
        try await withManager([("aaa", [8281])]) { client, _, coordinator in
            let token = try #require(try await login(client, "aaa").last?.token)
            func framedExec(_ body: [UInt8]) async throws -> (status: Int, text: String) {
                let response = try await client.execute(
                    uri: "/v1/exec", method: .post, headers: [.authorization: "Bearer \(token)", .contentType: OutputStream.contentType],
                    body: ByteBuffer(bytes: body))
                return (Int(response.status.code), String(buffer: response.body))
            }
            // A request frame announcing 600 KB, over the 512 KB an exec's body may hold.
            let oversized: [UInt8] = [0, 0, 0, 0] + withUnsafeBytes(of: UInt32(600 * 1024).bigEndian, Array.init) + [UInt8](repeating: 0x20, count: 1024)
            let refused = try await framedExec(oversized)
            #expect(refused.status == 400 && refused.text.contains("over the 512 KB a request may hold"), "\(refused)")
            // Every slot taken: the next is refused before its frame (here not even JSON) is read.
            let streams = coordinator.streams
            let session = try #require(await coordinator.sessions.session(user: "aaa"))
            for _ in 0..<streams.perUser { #expect(streams.take(session, on: nil)) }
            defer { for _ in 0..<streams.perUser { streams.give(session, on: nil) } }
            let busy = try await framedExec([0, 0, 0, 0, 0, 0, 0, 3] + Array("{x}".utf8))
            #expect(busy.status == 429, "\(busy)")
            // So does a plain exec, whose body (here not JSON) is left unread.
            let plain = try await client.execute(
                uri: "/v1/exec", method: .post, headers: [.authorization: "Bearer \(token)", .contentType: "application/json"],
                body: ByteBuffer(string: "{x}"))
            #expect(plain.status == .tooManyRequests, "\(String(buffer: plain.body))")
        }
    }

    /// A token taken from the user stops working when the session ends, on requests already let
    /// in too: an exec whose head came before a forced login and whose body comes after never
    /// reaches the agent (it would have run in the new session's container).
    @Test func anExecWhoseSessionEndsWhileItsBodyComesIsRefused() async throws {
        try await withManager([("aaa", [8281])], live: true) { client, agent, _ in
            let stolen = try #require(try await login(client, "aaa").last?.token)
            let execsBefore = await agent.units.execs
            let body = String(decoding: try BerthJSON.encoder.encode(ClientExecRequest(unit: HostPort(host: FakeAgent.host, port: 8281), command: ["id"])), as: UTF8.self)
            let socket = try RawSocket(port: try #require(client.port))
            try socket.send("POST /v1/exec HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer \(stolen)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await login(client, "aaa", force: true).last?.kind == .done)
            try socket.send(body)
            // Its connection closed with the session, or its body was refused after it.
            let answer = await socket.readAll(timeout: 5)
            #expect(answer.isEmpty ? socket.closedByPeer : answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
            #expect(await agent.units.execs == execsBefore)
        }
    }

    /// A copy into the home that is under way when its session ends is cut there: its
    /// connection closes and the agent never sees its end, so nothing is written after a logout.
    @Test func aCopyUnderWayWhenItsSessionEndsIsCutOff() async throws {
        try await withManager([("aaa", [8281])], live: true) { client, agent, _ in
            let token = try #require(try await login(client, "aaa").last?.token)
            let copiesBefore = await agent.units.copies
            let socket = try RawSocket(port: try #require(client.port))
            try socket.send(
                "PUT /v1/files?unit=\(FakeAgent.host):8281&path=/app/late HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer \(token)\r\n"
                    + "Content-Type: \(TarStream.contentType)\r\nContent-Length: 1048576\r\n\r\n" + String(repeating: "x", count: 4096))
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await call(client, .post, "/v1/logout", token: token).status == 200)
            _ = await socket.readAll(timeout: 5)
            #expect(socket.closedByPeer)
            try? socket.send(String(repeating: "y", count: 4096))
            #expect(await agent.units.copies == copiesBefore)
        }
    }

    @Test func callsWithoutAValidTokenOrWithBadBodiesAreOneLineRefusals() async throws {
        try await withManager([("aaa", [8281])]) { client, _ in
            let none = try await call(client, .get, "/v1/status", token: nil)
            #expect(none.status == 401 && none.text == #"{"error":"not logged in; run berth login"}"#)
            #expect(try await call(client, .post, "/v1/logout", token: "forged").status == 401)
            let response = try await client.execute(uri: "/v1/login", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"user": 1}"#))
            #expect(response.status == .badRequest)
            #expect(String(buffer: response.body).hasPrefix(#"{"error":"request body"#))
        }
    }
}

/// An agent that starts and stops nothing but remembers which units run, answering the
/// manager's signed requests as a real agent does.
final class FakeAgent: Sendable {
    static let host = "127.0.0.1"
    let port: Int
    let units: Units
    private let task: Task<Void, any Error>

    actor Units {
        var running: [Int: UnitStatus] = [:]
        /// Ports whose start the fake engine refuses.
        var failing: Set<Int> = []
        func reset(failing: Set<Int>) {
            running = [:]
            self.failing = failing
        }
        func started(_ status: UnitStatus) { running[status.unit.port] = status }
        func stopped(_ ports: [Int]?) -> [Int] {
            let removed = (ports ?? Array(running.keys)).filter { running[$0] != nil }
            for port in removed { running[port] = nil }
            return removed.sorted()
        }
        func list() -> [UnitStatus] { running.values.sorted { $0.unit < $1.unit } }
        /// Execs the agent was asked to run, and copies whose tar stream came whole.
        var execs = 0
        var copies = 0
        func execed() { execs += 1 }
        func copied() { copies += 1 }
    }

    var running: [Int] { get async { await units.list().map(\.unit.port) } }

    private init(port: Int, units: Units, task: Task<Void, any Error>) {
        self.port = port
        self.units = units
        self.task = task
    }

    /// One agent for the whole run, never stopped: a Hummingbird server cancelled while a
    /// connection's streamed answer is still open ends the test process.
    static func shared() async throws -> FakeAgent {
        try await instance.value
    }

    private static let instance = Task { try await start() }

    private static func start() async throws -> FakeAgent {
        let units = Units()
        let port = try freePort()
        let router = Router(context: BerthRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: SignatureMiddleware(verifier: RequestVerifier(secret: ManagerRoutesTests.secret, audience: "\(host):\(port)")))
        router.post("v1/units/start") { request, context in
            let start = try await request.decodeJSON(StartUnitRequest.self, limit: AgentRoutes.startUnit.maxBody, context: context)
            return jsonLinesResponse { (emit: @escaping @Sendable (StartUnitEvent) async throws -> Void) in
                if await units.failing.contains(start.unit.port) {
                    try await emit(StartUnitEvent(kind: .failed, status: 409, error: "unit \(start.unit): the fake engine says no"))
                    return
                }
                let status = UnitStatus(unit: start.unit, user: start.user, session: start.session, state: "running")
                await units.started(status)
                try await emit(StartUnitEvent(kind: .ready, unit: status))
            }
        }
        router.post("v1/units/stop") { request, context in
            let stop = try await request.decodeJSON(StopUnitsRequest.self, limit: AgentRoutes.stopUnits.maxBody, context: context)
            let removed = await units.stopped(stop.units?.map(\.port))
            return try jsonResponse(StopUnitsResponse(removed: removed.map { HostPort(host: host, port: $0) }))
        }
        router.get("v1/units") { _, _ in
            try jsonResponse(UnitList(units: await units.list()))
        }
        router.post("v1/units/exec") { request, context in
            _ = try await request.decodeJSON(ExecRequest.self, limit: AgentRoutes.exec.maxBody, context: context)
            await units.execed()
            return Response(status: .ok, headers: [.contentType: OutputStream.contentType], body: .init(byteBuffer: ByteBuffer(bytes: [1, 0, 0, 0, 0, 0, 0, 3] + Array("ran".utf8))))
        }
        router.put("v1/units/files") { request, _ in
            var written = 0
            for try await piece in request.body { written += piece.readableBytes }
            await units.copied()
            return try jsonResponse(CopyResult(written: written))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port)))
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        for _ in 0..<200 where !canConnect(port: port) { try await Task.sleep(for: .milliseconds(10)) }
        return FakeAgent(port: port, units: units, task: task)
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw ServiceError.unreachable(what: "a free port", reason: "bind failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr(host)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
