import BerthAPI
import BerthCore
import BerthTLS
import Foundation
import HTTPClient
import NIOTransport
import TestSupport
import Testing

/// Manager, agents and units speaking TLS with a CA made by `berth-manager tls`, attacked from
/// the network's side: a sniffer on `lo`, clients without the right certificate, a unit's key
/// swapped, plain text sent to TLS ports.
@Suite(.serialized, .enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct TLSTests {
    static let marker = "EMPLOYEE-ROW-\(UUID().uuidString.prefix(8))"

    /// A cluster of berth-unit payloads whose user aaa has a script printing `marker`.
    static func cluster(tls: Bool) async throws -> ClusterFixture {
        let cluster = try await ClusterFixture(payload: .berthUnit, users: [("aaa", ClusterFixture.hosts)], tls: tls)
        let home = cluster.home("aaa")
        try FileManager.default.createDirectory(atPath: home + "/script", withIntermediateDirectories: true)
        try "echo \(marker) \"$1\"\n".write(toFile: home + "/script/show.sh", atomically: true, encoding: .utf8)
        try cluster.handHomeToUser("aaa")
        return cluster
    }

    /// The session file's secrets: the bearer token and the unit secret.
    static func secrets(_ cluster: ClusterFixture, _ user: String) throws -> [String] {
        let data = try Data(contentsOf: URL(fileURLWithPath: cluster.root + "/session-\(user).json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return [try #require(json["token"] as? String), try #require(json["unitSecret"] as? String)]
    }

    /// Everything `tcpdump` saw on `lo` to and from the cluster's ports while `body` ran.
    static func capture(_ cluster: ClusterFixture, _ body: () async throws -> Void) async throws -> Data {
        let file = cluster.root + "/lo.pcap"
        let ports = [cluster.managerAddress.port, cluster.communicationPort] + cluster.units.values.flatMap { $0.map(\.port) }
        let tcpdump = Process()
        tcpdump.executableURL = URL(fileURLWithPath: try #require(["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first { FileManager.default.isExecutableFile(atPath: $0) }, "tcpdump is missing (scripts/ensure-engine.sh installs it)"))
        tcpdump.arguments = ["-i", "lo", "-U", "-s", "0", "-Z", "root", "-w", file, "tcp and (" + ports.map { "port \($0)" }.joined(separator: " or ") + ")"]
        let errors = Pipe()
        tcpdump.standardError = errors
        try tcpdump.run()
        // tcpdump says "listening on lo" once it captures, perhaps in more than one write.
        let listening = try await Background.run { () -> String in
            var said = Data()
            while !String(decoding: said, as: UTF8.self).contains("listening on") {
                let more = errors.fileHandleForReading.availableData
                if more.isEmpty { break }
                said.append(more)
            }
            return String(decoding: said, as: UTF8.self)
        }
        #expect(listening.contains("listening on lo"), "\(listening)")
        try await body()
        try await Task.sleep(for: .milliseconds(500))
        // SIGINT, which tcpdump ends on whatever this process ignores; it writes each packet as it
        // comes (-U), so even a kill loses nothing.
        kill(tcpdump.processIdentifier, SIGINT)
        let ended = try await Background.run { () -> Bool in
            for _ in 0..<50 where tcpdump.isRunning { usleep(100_000) }
            return !tcpdump.isRunning
        }
        if !ended { kill(tcpdump.processIdentifier, SIGKILL) }
        return try Data(contentsOf: URL(fileURLWithPath: file))
    }

    /// Login, call, exec (with typed input), copies both ways and logout, with what must never
    /// cross the network in clear.
    static func session(_ cluster: ClusterFixture) async throws -> [String] {
        try await cluster.expectLogin("aaa")
        let secrets = try Self.secrets(cluster, "aaa")
        let unit = cluster.units["aaa"]![0].description
        let call = try await cluster.berth(["call", "show.sh", "from-call", "--unit", unit], user: "aaa")
        #expect(call.status == 0 && call.stdout.contains(marker), "\(call.stderr)")
        let exec = try await cluster.berth(["exec", "--unit", unit, "--", "sh", "-c", "echo \(marker)-exec"], user: "aaa")
        #expect(exec.status == 0 && exec.stdout.contains("\(marker)-exec"), "\(exec.stderr)")
        // What is typed into an exec: up through manager and agent, back as the command's output.
        let typed = "typed-\(UUID().uuidString.prefix(8))"
        let interactive = try await cluster.berth(["exec", "-i", "--unit", unit, "--", "cat"], user: "aaa", stdin: typed + "\n")
        #expect(interactive.status == 0 && interactive.stdout == typed + "\n", "\(interactive.stderr)")
        // A file copied in, and a script (printing the marker) copied out.
        let copied = "copied-\(UUID().uuidString.prefix(8))"
        let local = cluster.root + "/local"
        try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
        try Data(copied.utf8).write(to: URL(fileURLWithPath: local + "/note.txt"))
        let sent = try await cluster.berth(["cp", local + "/note.txt", "\(unit):/app/note.txt"], user: "aaa")
        #expect(sent.status == 0, "\(sent.stderr)")
        let got = try await cluster.berth(["cp", "\(unit):/app/script/show.sh", local], user: "aaa")
        #expect(got.status == 0 && (try? String(contentsOfFile: local + "/show.sh", encoding: .utf8))?.contains(marker) == true, "\(got.stderr)")
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
        return [ClusterFixture.password, marker, typed, copied] + secrets
    }

    @Test func aSnifferOnLoopbackSeesNoSecretOfATLSClusterButAllOfAPlainOne() async throws {
        let plain = try await Self.cluster(tls: false)
        defer { plain.shutdown() }
        var secrets: [String] = []
        let clear = try await Self.capture(plain) { secrets = try await Self.session(plain) }
        // The capture works: in plain HTTP every secret is there to read.
        for secret in secrets { #expect(clear.range(of: Data(secret.utf8)) != nil, "the plain capture lacks \(secret.prefix(6))…") }
        plain.shutdown()

        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        let sealed = try await Self.capture(cluster) { secrets = try await Self.session(cluster) }
        #expect(sealed.count > 10_000, "the TLS capture holds \(sealed.count) bytes: did it see the traffic?")
        for secret in secrets { #expect(sealed.range(of: Data(secret.utf8)) == nil, "\(secret.prefix(6))… crossed lo in clear") }
    }

    @Test func plainTextToTheManagerAnAgentOrAUnitGetsNoAnswer() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        try await cluster.expectLogin("aaa")
        // The admin's command reaches the TLS manager too, trusting the configured CA.
        let sessions = try await ClusterFixture.run("berth-manager", ["sessions", "--config", cluster.serverConfig])
        #expect(sessions.status == 0 && sessions.stdout.contains("aaa"), "\(sessions.stderr)")
        let request = Array("GET /v1/status HTTP/1.1\r\nHost: berth\r\n\r\n".utf8)
        for target in [cluster.managerAddress, cluster.agent(ClusterFixture.hosts[1]), cluster.units["aaa"]![1]] {
            let answer = RawExchange(host: target.host, port: target.port, send: request, halfClose: true)
            #expect(!answer.reply.hasPrefix("HTTP/"), "\(target) answered plain text: \(answer.reply.prefix(80))")
        }
    }

    /// A client that starts a TLS handshake and never finishes it (or sends nothing) holds the
    /// manager's, an agent's and a unit's connection for 10 s at most.
    @Test func aHandshakeThatNeverEndsIsCutOff() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        try await cluster.expectLogin("aaa")
        let targets = [cluster.managerAddress, cluster.agent(ClusterFixture.hosts[1]), cluster.units["aaa"]![1]]
        let clock = ContinuousClock()
        let start = clock.now
        let closedAfter = try await Background.run {
            let sockets = try targets.map { target -> Int32 in
                guard let fd = TestSocket.open(host: target.host, port: target.port, connect: true, receiveTimeout: 20) else {
                    throw TestSetupError("cannot connect to \(target)")
                }
                // The first bytes of a TLS record, and then nothing.
                var partial: [UInt8] = [0x16, 0x03, 0x01, 0x02]
                _ = send(fd, &partial, partial.count, Int32(MSG_NOSIGNAL))
                return fd
            }
            defer { for fd in sockets { close(fd) } }
            return sockets.map { fd -> Duration in
                _ = TestSocket.read(fd, limit: 1 << 16)
                return clock.now - start
            }
        }
        for (target, after) in zip(targets, closedAfter) {
            #expect(after < .seconds(15), "\(target) held a stalled handshake for \(after)")
        }
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
    }

    @Test func loginTrustsTheManagerOnlyByTheCAOrItsFingerprint() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        let server = cluster.managerAddress.description
        let login = { (extra: [String], environment: [String: String]) in
            try await cluster.berth(["login", "--server", server, "--user", "aaa", "--password-stdin"] + extra, user: "aaa",
                                    stdin: ClusterFixture.password + "\n", environment: environment)
        }
        // Nothing says to trust it: refused before the password is sent, with the key to pin.
        let unknown = try await login([], [:])
        #expect(unknown.status != 0)
        let shown = try #require(unknown.stderr.split(separator: " ").first { $0.hasPrefix("SHA256:") }.map { String($0.trimmingCharacters(in: .punctuationCharacters.subtracting(CharacterSet(charactersIn: ":")))) })
        #expect(unknown.stderr.contains("speaks TLS, and nothing says to trust it"), "\(unknown.stderr)")
        let expected = try KeyFingerprint(certificatePEM: try String(contentsOfFile: cluster.root + "/tls/127.0.0.2.crt", encoding: .utf8))
        #expect(shown == expected.description)

        let pinned = try await login(["--fingerprint", shown], [:])
        #expect(pinned.status == 0, "\(pinned.stderr)")
        #expect(try await cluster.berth(["status"], user: "aaa").status == 0)
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)

        let wrongKey = try await login(["--fingerprint", "SHA256:" + String(repeating: "ab", count: 32)], [:])
        #expect(wrongKey.status != 0 && wrongKey.stderr.contains("is not trusted"), "\(wrongKey.stderr)")

        let foreign = cluster.root + "/foreign"
        #expect(try await ClusterFixture.run("berth-manager", ["tls", "ca", "--out", foreign]).status == 0)
        let otherCA = try await login(["--ca", foreign + "/ca.crt"], [:])
        #expect(otherCA.status != 0, "a foreign CA was accepted")
        #expect(otherCA.stderr.contains("is not trusted") && otherCA.stderr.contains(expected.description), "\(otherCA.stderr)")

        // A CA file with no certificate in it: refused up front, in one line naming the file.
        let notCA = cluster.root + "/not-a-ca.crt"
        try Data("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n".utf8).write(to: URL(fileURLWithPath: notCA))
        let garbage = try await login(["--ca", notCA], [:])
        #expect(garbage.status != 0 && garbage.stderr == "error: --ca \(notCA): holds no PEM certificate\n", "\(garbage.stderr)")

        let byEnvironment = try await login([], ["BERTH_CA": cluster.caFile])
        #expect(byEnvironment.status == 0, "\(byEnvironment.stderr)")
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
    }

    /// A server at the manager's address that does not answer as a Berth manager does never
    /// receives the password, however often the login is tried: one that answers with a TLS
    /// alert, a TLS front that answers plain HTTP with a 400 (as nginx and Go's servers do), any
    /// other web server.
    @Test(arguments: [
        [UInt8]([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
        Array("HTTP/1.0 400 Bad Request\r\nContent-Length: 48\r\n\r\nClient sent an HTTP request to an HTTPS server.\n".utf8),
        Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8),
    ])
    func aServerNotAnsweringAsAManagerNeverSeesThePassword(answer: [UInt8]) async throws {
        let (listener, port) = try Self.listenerOnLoopback()
        defer { close(listener) }
        // Every connection is read for a moment, then given `answer` and closed.
        let received = Task {
            try await Background.run { () -> Data in
                var seen = Data()
                var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                while poll(&poller, 1, 3000) > 0 {
                    let fd = accept(listener, nil, nil)
                    guard fd >= 0 else { break }
                    var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
                    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count > 0 { seen.append(contentsOf: buffer[0..<count]) }
                    _ = send(fd, answer, answer.count, Int32(MSG_NOSIGNAL))
                    seen.append(TestSocket.read(fd, limit: 1 << 20))
                    close(fd)
                }
                return seen
            }
        }
        let password = "never-sent-\(UUID().uuidString)"
        let session = NSTemporaryDirectory() + "berth-session-\(UUID().uuidString).json"
        for _ in 0..<2 {
            let login = try await ClusterFixture.run(
                "berth", ["login", "--server", "127.0.0.1:\(port)", "--user", "aaa", "--password-stdin"],
                environment: ["BERTH_SESSION": session], stdin: password + "\n")
            #expect(login.status != 0)
            #expect(login.stderr.hasPrefix("error: ") && login.stderr.contains("127.0.0.1:\(port) does not answer as a Berth manager does"), "\(login.stderr)")
        }
        let seen = try await received.value
        #expect(!seen.isEmpty, "the login never reached the server")
        #expect(seen.range(of: Data(password.utf8)) == nil, "the password was sent")
        #expect(!FileManager.default.fileExists(atPath: session))
    }

    /// A listening socket on 127.0.0.1 at a port of the system's choosing, standing in for a manager.
    static func listenerOnLoopback() throws -> (fd: Int32, port: Int) {
        let listener = try #require(TestSocket.open(host: "127.0.0.1", port: 0, connect: false))
        #expect(listen(listener, 16) == 0)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        return (listener, Int(UInt16(bigEndian: bound.sin_port)))
    }

    /// A login waiting for its password to be typed holds no connection to the manager: each one
    /// held would count against the manager's limit of connections per address that have not
    /// logged in, and a class behind one NAT, all at the prompt at once, would reach it.
    @Test func aLoginAtItsPasswordPromptHoldsNoConnection() async throws {
        let (listener, port) = try Self.listenerOnLoopback()
        defer { close(listener) }
        // Answers the check as a manager does, keeping the connection open, then waits for the
        // client to close it (true) or for 20 s (false).
        let closedByClient = Task {
            try await Background.run { () -> Bool in
                var poller = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, 20_000) > 0 else { return false }
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                var buffer = [UInt8](repeating: 0, count: 65536)
                guard recv(fd, &buffer, buffer.count, 0) > 0 else { return false }
                let body = #"{"error":"not logged in"}"#
                let answer = Array("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
                _ = send(fd, answer, answer.count, Int32(MSG_NOSIGNAL))
                var timeout = timeval(tv_sec: 20, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                return recv(fd, &buffer, buffer.count, 0) == 0
            }
        }
        let terminal = try PseudoTerminal(rows: 24, columns: 80)
        let session = NSTemporaryDirectory() + "berth-session-\(UUID().uuidString).json"
        let process = try terminal.run(ClusterFixture.binaries + "/berth", ["login", "--server", "127.0.0.1:\(port)", "--user", "aaa"],
            environment: ["BERTH_SESSION": session])
        defer { process.terminate() }
        #expect(try await terminal.read(until: "Password for aaa"), "\(terminal.transcript)")
        #expect(try await closedByClient.value, "the connection stayed open while the password was asked for")
    }

    /// Only the manager's certificate commands an agent: another agent's, or none, gets nothing,
    /// even with the cluster secret.
    @Test func agentsObeyOnlyTheManagersCertificate() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        let ca = try String(contentsOfFile: cluster.caFile, encoding: .utf8)
        func client(_ host: String?) throws -> ServiceClient {
            let tls = try ClientTLS(
                trustedCAs: ca, clientCertificate: host.map { try String(contentsOfFile: cluster.root + "/tls/\($0).crt", encoding: .utf8) },
                clientKey: host.map { try String(contentsOfFile: cluster.root + "/tls/\($0).key", encoding: .utf8) })
            return ServiceClient(address: cluster.agent(ClusterFixture.hosts[0]), name: "agent", signer: RequestSigner(secret: cluster.secret), tls: tls, transport: Transport.self)
        }
        _ = try await client(ClusterFixture.hosts[0]).call(AgentRoutes.units)
        for (name, host) in [("another agent's certificate", ClusterFixture.hosts[1]), ("no certificate", nil)] {
            do {
                _ = try await client(host).call(AgentRoutes.units)
                Issue.record("\(name) was obeyed")
            } catch let error as ServiceError {
                guard case .untrusted = error else {
                    Issue.record("\(name): \(error)")
                    continue
                }
            }
        }
    }

    /// `berth call` accepts each unit's own session key and no other.
    @Test func callRefusesAUnitWhoseKeyIsNotThePinnedOne() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        try await cluster.expectLogin("aaa")
        let path = cluster.root + "/session-aaa.json"
        let session = try String(contentsOfFile: path, encoding: .utf8)
        #expect(session.contains("\"unitKeys\""))
        let unit = cluster.units["aaa"]![0].description
        #expect(try await cluster.berth(["call", "show.sh", "--unit", unit], user: "aaa").status == 0)
        // Another key where the unit's was: as if someone else answered on its address.
        let swapped = try NSRegularExpression(pattern: "SHA256:[0-9a-f]{64}").stringByReplacingMatches(
            in: session, range: NSRange(session.startIndex..., in: session), withTemplate: "SHA256:" + String(repeating: "0f", count: 32))
        try swapped.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        let refused = try await cluster.berth(["call", "show.sh", "--unit", unit], user: "aaa")
        #expect(refused.status != 0 && refused.stderr.contains("not trusted"), "\(refused.stderr)")
        #expect(!refused.stdout.contains(Self.marker))
        try session.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        #expect(try await cluster.berth(["logout"], user: "aaa").status == 0)
    }

    /// SIGHUP makes a daemon serve new certificate files; the manager checks that an agent's
    /// certificate names the agent's own address; `/metrics` shows how long the certificate lasts.
    @Test func certificatesReloadOnSIGHUPAndAnAgentMustBeNamedByItsOwn() async throws {
        let cluster = try await Self.cluster(tls: true)
        defer { cluster.shutdown() }
        let tls = cluster.root + "/tls"
        let ca = (certificate: try String(contentsOfFile: tls + "/ca/ca.crt", encoding: .utf8), key: try String(contentsOfFile: tls + "/ca/ca.key", encoding: .utf8))
        let address = cluster.managerAddress
        let before = try #require(await TLSProbe.certificate(host: address.host, port: address.port))

        // A renewed manager certificate, expiring in 10 days: served after SIGHUP, and warned about.
        let renewed = try ClusterCertificates.makeHost(addresses: [ClusterFixture.hosts[0], address.host], manager: true, authority: ca, days: 10)
        try renewed.key.write(toFile: tls + "/127.0.0.2.key", atomically: true, encoding: .utf8)
        chmod(tls + "/127.0.0.2.key", 0o600)
        try renewed.certificate.write(toFile: tls + "/127.0.0.2.crt", atomically: true, encoding: .utf8)
        cluster.reloadManager()
        try await Task.sleep(for: .seconds(1))
        let after = try #require(await TLSProbe.certificate(host: address.host, port: address.port))
        #expect(try KeyFingerprint(certificatePEM: after) == KeyFingerprint(certificatePEM: renewed.certificate))
        #expect(try KeyFingerprint(certificatePEM: after) != KeyFingerprint(certificatePEM: before))
        let log = try String(contentsOfFile: cluster.root + "/manager.log", encoding: .utf8)
        #expect(log.contains("TLS certificate expires soon"), "\(log.suffix(500))")
        let scrape = try await ServiceClient(address: address, name: "manager", tls: ClientTLS(trustedCAs: ca.certificate), transport: Transport.self).stream(ManagerRoutes.metrics)
        var metrics = Data()
        for try await chunk in scrape.body { metrics.append(chunk) }
        let expiry = String(decoding: metrics, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("berth_manager_tls_certificate_expiry_seconds ") }
        let seconds = try #require(expiry.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } })
        #expect(seconds > 9 * 86_400 && seconds <= 10 * 86_400)

        // The agent on 127.0.0.3 comes back with a certificate of the cluster's CA that names
        // another address: the manager refuses it, so a login with a unit there fails and says why.
        let other = try ClusterCertificates.makeHost(addresses: ["127.0.0.9"], manager: false, authority: ca)
        try other.key.write(toFile: tls + "/127.0.0.3.key", atomically: true, encoding: .utf8)
        chmod(tls + "/127.0.0.3.key", 0o600)
        try other.certificate.write(toFile: tls + "/127.0.0.3.crt", atomically: true, encoding: .utf8)
        cluster.killAgentHard(ClusterFixture.hosts[1])
        try await cluster.startAgent(ClusterFixture.hosts[1])
        let login = try await cluster.login("aaa")
        #expect(login.status != 0)
        #expect(login.stderr.contains("not trusted"), "\(login.stderr)")
        #expect(try await cluster.containers(of: "aaa").isEmpty)
    }
}
