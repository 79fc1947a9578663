import Foundation
import Testing
@testable import BerthConfig
import BerthTLS
import BerthAPI
@testable import BerthCore

// MARK: - Fixtures

/// A folder of its own for one test, removed when the test lets go of it.
private final class TemporaryFolder {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "berth-config-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Written for its owner only, as a cluster key must be.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o600)
        return file
    }

    func makeDirectory(_ name: String) throws -> String {
        let directory = path + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }
}

/// A CA and one host's certificate and key, as `berth-manager tls` writes them, in `folder/tls`;
/// returns that folder.
func writeTLSFiles(in folder: String, host: String, manager: Bool) throws -> String {
    let tls = folder + "/tls"
    try NewFiles.makeDirectory(tls)
    let ca = try ClusterCertificates.makeAuthority()
    let made = try ClusterCertificates.makeHost(addresses: [host], manager: manager, authority: ca)
    try NewFiles.write(ca.certificate, to: tls + "/ca.crt", mode: 0o644)
    try NewFiles.write(made.certificate, to: tls + "/\(host).crt", mode: 0o644)
    try NewFiles.write(made.key, to: tls + "/\(host).key", mode: 0o600)
    return tls
}

private let xmlDeclaration = #"<?xml version="1.0" encoding="UTF-8"?>"#

/// The esProc design's example docker_server.xml, one element per line: <Config> on line 2,
/// <Server> 3, <Share> 4, <NodeType> 5, and `extra` lines from line 6; then, on a network address
/// without TLS elements, `<Insecure>true</Insecure>`, which such a file needs to load.
private func serverXML(
    server: String = "192.168.0.76:9001", share: String, nodeType: String? = "manager", extra: [String] = []
) -> String {
    var lines = [xmlDeclaration, "<Config>", "  <Server>\(server)</Server>", "  <Share>\(share)</Share>"]
    if let nodeType { lines.append("  <NodeType>\(nodeType)</NodeType>") }
    lines += extra.map { "  " + $0 }
    if !server.hasPrefix("127."), !extra.contains(where: { $0.hasPrefix("<CA>") || $0.hasPrefix("<Insecure>") }) {
        lines.append("  <Insecure>true</Insecure>")
    }
    lines.append("</Config>")
    return lines.joined(separator: "\n") + "\n"
}

/// The esProc design's example users' elements, one per line, in its order.
private let exampleAaa = [
    "<Name>aaa</Name>", "<Alias>张三</Alias>", "<Pwd>123456</Pwd>", "<Memory>500m</Memory>", "<CPU>512</CPU>",
    "<Home>/opt/app/aaa</Home>", "<Unit>192.168.0.76:8281</Unit>",
]
private let exampleBbb = [
    "<Name>bbb</Name>", "<Alias>李四</Alias>", "<Pwd>123456</Pwd>", "<Memory>500m</Memory>", "<CPU>512</CPU>",
    "<Home>/opt/app/bbb</Home>", "<Unit>192.168.0.77:8282,192.168.0.77:8283</Unit>",
]

/// A docker_user.xml with one element per line. For the example users: aaa's <User> is on line 3,
/// then Name 4, Alias 5, Pwd 6, Memory 7, CPU 8, Home 9, Unit 10; bbb's <User> is on line 12,
/// then Name 13, Alias 14, Pwd 15, Memory 16, CPU 17, Home 18, Unit 19.
private func usersXML(_ users: [[String]] = [exampleAaa, exampleBbb]) -> String {
    var lines = [xmlDeclaration, "<Users>"]
    for user in users {
        lines.append("  <User>")
        lines += user.map { "    " + $0 }
        lines.append("  </User>")
    }
    lines.append("</Users>")
    return lines.joined(separator: "\n") + "\n"
}

/// `user` with the element starting with `prefix` (e.g. "<CPU>") replaced, or removed when nil.
private func replacing(_ prefix: String, with line: String?, in user: [String]) -> [String] {
    user.compactMap { $0.hasPrefix(prefix) ? line : $0 }
}

private func errors(_ problems: [ConfigProblem]) -> [String] {
    problems.filter { $0.severity == .error }.map(\.description)
}

private func warnings(_ problems: [ConfigProblem]) -> [String] {
    problems.filter { $0.severity == .warning }.map(\.description)
}

/// A loaded example docker_server.xml (communication port 9001, manager at 192.168.0.76:9000).
private func exampleServer(in folder: TemporaryFolder) throws -> ServerConfig {
    let share = try folder.makeDirectory("share")
    let path = try folder.write("docker_server.xml", serverXML(share: share))
    let (config, problems) = ServerConfig.load(path: path)
    #expect(problems.isEmpty)
    return try #require(config)
}

// MARK: - The esProc multi-tenant design's files

@Suite("The esProc multi-tenant design's configuration files")
struct DesignConfigTests {
    @Test func designServerFileLoadsWithDefaults() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let path = try folder.write("docker_server.xml", serverXML(share: share))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(problems.isEmpty)
        let server = try #require(config)
        #expect(server.file == path)
        #expect(server.server == HostPort(host: "192.168.0.76", port: 9001))
        #expect(server.communicationPort == 9001)
        #expect(server.share == share)
        #expect(server.isManager)
        #expect(server.manager == HostPort(host: "192.168.0.76", port: 9000))
        #expect(server.secretFile == nil)
        #expect(server.image == "berth-unit:latest")
        #expect(server.template == nil)
        #expect(server.docker == "unix:///var/run/docker.sock")
        #expect(server.readyTimeoutSeconds == 60)
        #expect(server.concurrentStarts == max(2, ProcessInfo.processInfo.activeProcessorCount))
    }

    @Test func designServerFileOfAnotherHostIsNotTheManager() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        // The design's second host: no declaration, no <NodeType>, blank lines between elements.
        let design = "<Config>\n\n<Server>192.168.0.77:9001</Server>\n\n<Share>\(share)</Share>\n\n</Config>\n"
        let plain = try folder.write("docker_server.xml", design)
        // On a network address it needs TLS, or the admin's word that clear text is acceptable.
        #expect(ServerConfig.load(path: plain).problems.map(\.description) == [
            "\(plain):3: 192.168.0.77:9001 is reachable from the network and no TLS is configured: add <CA>, <Cert> and <Key> (berth-manager tls), or <Insecure>true</Insecure> to send passwords and tokens in clear",
        ])
        let path = try folder.write("docker_server_insecure.xml", design.replacingOccurrences(of: "</Config>", with: "<Insecure>true</Insecure></Config>"))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(problems.isEmpty)
        let server = try #require(config)
        #expect(!server.isManager)
        #expect(server.manager == HostPort(host: "192.168.0.77", port: 9000))
    }

    @Test func designUsersFileLoadsWithOnlyPlainPasswordWarnings() throws {
        let folder = try TemporaryFolder()
        let server = try exampleServer(in: folder)
        let path = try folder.write("docker_user.xml", usersXML())

        let (config, problems) = UsersConfig.load(path: path, server: server)

        #expect(errors(problems).isEmpty)
        #expect(warnings(problems) == [
            "\(path):6: warning: user aaa: plain-text <Pwd>; replace it with <PwdHash> from berth-manager hash-password",
            "\(path):15: warning: user bbb: plain-text <Pwd>; replace it with <PwdHash> from berth-manager hash-password",
        ])
        let users = try #require(config)
        #expect(users.file == path)
        #expect(users.users.map(\.name) == ["aaa", "bbb"])

        let aaa = try #require(users.user(named: "aaa"))
        #expect(aaa.alias == "张三")
        #expect(aaa.password == .plain("123456"))
        #expect(aaa.memory.limitBytes == 500 * 1024 * 1024)
        #expect(aaa.memory.dockerMemory == "500m")
        #expect(aaa.cpu == 512)
        #expect(aaa.home == "/opt/app/aaa")
        #expect(aaa.units == [HostPort(host: "192.168.0.76", port: 8281)])
        #expect(aaa.line == 3)

        let bbb = try #require(users.user(named: "bbb"))
        #expect(bbb.alias == "李四")
        #expect(bbb.home == "/opt/app/bbb")
        #expect(bbb.units == [HostPort(host: "192.168.0.77", port: 8282), HostPort(host: "192.168.0.77", port: 8283)])
        #expect(bbb.line == 12)
        #expect(users.user(named: "ccc") == nil)
        #expect(users.user(named: "AAA") == nil)
    }

    @Test func designUsersFileWrittenOnOneLineLoads() throws {
        let folder = try TemporaryFolder()
        // The shape the esProc design shows, everything on one line.
        let text = #"<?xml version="1.0" encoding="UTF-8"?> <Users> <User> <Name>aaa</Name> <Alias>张三</Alias> <Pwd>123456</Pwd> <Memory>500m</Memory> <CPU>512</CPU> <Home>/opt/app/aaa</Home> <Unit>192.168.0.76:8281</Unit> </User> <User> <Name>bbb</Name> <Alias>李四</Alias> <Pwd>123456</Pwd> <Memory>500m</Memory> <CPU>512</CPU> <Home>/opt/app/bbb</Home> <Unit>192.168.0.77:8282,192.168.0.77:8283</Unit> </User> </Users>"#
        let path = try folder.write("docker_user.xml", text)

        let (config, problems) = UsersConfig.load(path: path, server: try exampleServer(in: folder))

        #expect(errors(problems).isEmpty)
        #expect(warnings(problems).count == 2)
        #expect(config?.users.map(\.name) == ["aaa", "bbb"])
        #expect(config?.users.map(\.line) == [1, 1])
    }

    @Test func shippedSamplesLoadOnceTheirPathsExist() throws {
        let folder = try TemporaryFolder()
        let samples = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Resources/templates/samples")
        let serverSample = try String(contentsOf: samples.appendingPathComponent("docker_server.xml"), encoding: .utf8)
        let usersSample = try String(contentsOf: samples.appendingPathComponent("docker_user.xml"), encoding: .utf8)
        let share = try folder.makeDirectory("share")
        let secret = try folder.write("cluster.key", "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n")
        let tls = try writeTLSFiles(in: folder.path, host: "192.168.0.76", manager: true)
        let serverPath = try folder.write("docker_server.xml", serverSample
            .replacingOccurrences(of: "/home/docker/share", with: share)
            .replacingOccurrences(of: "/etc/berth/cluster.key", with: secret)
            .replacingOccurrences(of: "/etc/berth/tls", with: tls))
        let usersPath = try folder.write("docker_user.xml", usersSample)

        let (server, serverProblems) = ServerConfig.load(path: serverPath)
        #expect(serverProblems.isEmpty)
        #expect(server?.secretFile == secret)
        #expect(server?.manager == HostPort(host: "192.168.0.76", port: 9000))
        #expect(server?.tls?.certificate == tls + "/192.168.0.76.crt")

        let (users, userProblems) = UsersConfig.load(path: usersPath, server: server)
        #expect(errors(userProblems).isEmpty)
        #expect(warnings(userProblems).count == 2)
        #expect(users?.users.map(\.name) == ["aaa", "bbb"])
    }
}

// MARK: - docker_server.xml

/// One wrong value in an otherwise example-shaped docker_server.xml and the one error it must give.
struct BadServerCase: Sendable, CustomTestStringConvertible {
    var server = "192.168.0.76:9001"
    var share: String? = nil
    var nodeType: String? = "manager"
    var extra: [String] = []
    var line: Int
    var message: String
    var testDescription: String { message }
}

@Suite("docker_server.xml validation")
struct ServerConfigTests {
    static let badCases: [BadServerCase] = [
        BadServerCase(server: "192.168.0.76", line: 3,
                      message: #"server "192.168.0.76": missing port; expected ip:port"#),
        BadServerCase(server: "192.168.0.76:70000", line: 3,
                      message: #"server "192.168.0.76:70000": port 70000 is out of range 1...65535"#),
        BadServerCase(server: "192.168.0.300:9001", line: 3,
                      message: #"server "192.168.0.300:9001": "192.168.0.300" is not an IPv4 address (four numbers 0-255 separated by dots)"#),
        BadServerCase(share: "/nonexistent/berth/share", line: 4, message: "share /nonexistent/berth/share does not exist"),
        BadServerCase(share: "home/docker/share", line: 4, message: #"share "home/docker/share": must be an absolute path"#),
        BadServerCase(share: "/etc/passwd", line: 4, message: "share /etc/passwd is not a directory"),
        BadServerCase(nodeType: "worker", line: 5,
                      message: #"NodeType "worker": the only value is manager (leave <NodeType> out on the other hosts)"#),
        BadServerCase(extra: ["<Manager>nowhere</Manager>"], line: 6, message: #"manager "nowhere": missing port; expected ip:port"#),
        BadServerCase(extra: ["<Manager>192.168.0.76:9001</Manager>"], line: 6,
                      message: "manager 192.168.0.76:9001 uses the communication port 9001"),
        BadServerCase(server: "192.168.0.76:9000", line: 2,
                      message: "the default manager address 192.168.0.76:9000 uses the communication port 9000; add <Manager> with another port"),
        BadServerCase(extra: ["<Secret>/nonexistent/cluster.key</Secret>"], line: 6,
                      message: "secret /nonexistent/cluster.key is not readable: No such file or directory"),
        BadServerCase(extra: ["<Secret></Secret>"], line: 6, message: "<Secret> is empty; give the file holding the cluster secret"),
        BadServerCase(extra: ["<ReadyTimeout>0</ReadyTimeout>"], line: 6,
                      message: #"ReadyTimeout "0": must be a whole number of seconds from 1 to 3600"#),
        BadServerCase(extra: ["<ReadyTimeout>3601</ReadyTimeout>"], line: 6,
                      message: #"ReadyTimeout "3601": must be a whole number of seconds from 1 to 3600"#),
        BadServerCase(extra: ["<ReadyTimeout>1m</ReadyTimeout>"], line: 6,
                      message: #"ReadyTimeout "1m": must be a whole number of seconds from 1 to 3600"#),
        BadServerCase(extra: ["<ConcurrentStarts>0</ConcurrentStarts>"], line: 6,
                      message: #"ConcurrentStarts "0": must be a whole number from 1 to 256"#),
        BadServerCase(extra: ["<ConcurrentStarts>two</ConcurrentStarts>"], line: 6,
                      message: #"ConcurrentStarts "two": must be a whole number from 1 to 256"#),
        BadServerCase(extra: ["<EngineWorkers>0</EngineWorkers>"], line: 6,
                      message: #"EngineWorkers "0": must be a whole number from 1 to 4096"#),
        BadServerCase(extra: ["<EngineStreams>lots</EngineStreams>"], line: 6,
                      message: #"EngineStreams "lots": must be a whole number from 1 to 4096"#),
        BadServerCase(extra: ["<Docker>http://localhost:2375</Docker>"], line: 6,
                      message: #"docker "http://localhost:2375": must start with unix:// or tcp://"#),
        BadServerCase(extra: ["<Docker>tcp://engine.example</Docker>"], line: 6,
                      message: #"docker "tcp://engine.example": expected tcp://HOST:PORT"#),
        BadServerCase(extra: ["<Docker>unix://var/run/docker.sock</Docker>"], line: 6,
                      message: #"docker "unix://var/run/docker.sock": a unix socket path must be absolute"#),
        BadServerCase(extra: ["<Image></Image>"], line: 6, message: "<Image> is empty; leave it out to use berth-unit:latest"),
        BadServerCase(extra: ["<HomeRoot>/</HomeRoot>"], line: 6, message: "HomeRoot is /; give the directory that holds the users' homes, e.g. /opt/app"),
        BadServerCase(extra: ["<HomeRoot>opt/app</HomeRoot>"], line: 6, message: #"HomeRoot "opt/app": must be an absolute path without . or .."#),
        BadServerCase(extra: ["<HomeRoot>/nonexistent/app</HomeRoot>"], line: 6, message: "HomeRoot /nonexistent/app is not an existing directory"),
        BadServerCase(extra: ["<AllowRootUnits>yes</AllowRootUnits>"], line: 6, message: #"<AllowRootUnits> "yes": must be true or false"#),
        BadServerCase(extra: ["<LogDir>logs</LogDir>"], line: 6, message: #"LogDir "logs": must be an absolute path"#),
        BadServerCase(extra: ["<Template>/nonexistent/unit.json</Template>"], line: 6,
                      message: "template /nonexistent/unit.json does not exist"),
        BadServerCase(extra: ["<Server>192.168.0.77:9001</Server>"], line: 6, message: "duplicate <Server> (first at line 3)"),
        BadServerCase(extra: ["", "<Share>/tmp</Share>"], line: 7, message: "duplicate <Share> (first at line 4)"),
        BadServerCase(extra: ["<Image>a<b/></Image>"], line: 6, message: "<Image> holds a value, not elements; remove <b>"),
    ]

    @Test(arguments: badCases)
    func oneBadValueGivesOneErrorAtItsLine(_ badCase: BadServerCase) throws {
        let folder = try TemporaryFolder()
        let share = try badCase.share ?? folder.makeDirectory("share")
        let path = try folder.write("docker_server.xml", serverXML(
            server: badCase.server, share: share, nodeType: badCase.nodeType, extra: badCase.extra))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(errors(problems) == ["\(path):\(badCase.line): \(badCase.message)"])
        #expect(config == nil)
    }

    @Test func missingRequiredElementsPointAtConfig() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_server.xml", "\(xmlDeclaration)\n<Config>\n  <NodeType>manager</NodeType>\n</Config>\n")

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(errors(problems) == [
            "\(path):2: missing <Server> (the ip:port this host's agent listens on, e.g. 192.168.0.76:9001)",
            "\(path):2: missing <Share> (the directory mounted read-only at /share in every container)",
        ])
    }

    @Test func wrongRootElementIsTheOnlyProblem() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_server.xml", usersXML())

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(problems.map(\.description) == ["\(path):2: the root element must be <Config>, not <Users>"])
    }

    @Test func everyProblemIsReportedInOnePassInFileOrder() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_server.xml", serverXML(
            server: "192.168.0.76:abc", share: "/nonexistent/share", nodeType: "Manager",
            extra: ["<Foo>1</Foo>", "<ReadyTimeout>0</ReadyTimeout>", "<Docker>npipe://x</Docker>"]))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(problems.map(\.description) == [
            #"\#(path):3: server "192.168.0.76:abc": port "abc" is not a number"#,
            "\(path):4: share /nonexistent/share does not exist",
            #"\#(path):5: NodeType "Manager": the only value is manager (leave <NodeType> out on the other hosts)"#,
            "\(path):6: warning: unknown element <Foo> ignored",
            #"\#(path):7: ReadyTimeout "0": must be a whole number of seconds from 1 to 3600"#,
            #"\#(path):8: docker "npipe://x": must start with unix:// or tcp://"#,
        ])
    }

    @Test func unknownElementsWarnButDoNotBlockLoading() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let path = try folder.write("docker_server.xml", serverXML(share: share, extra: ["<Foo>bar</Foo>", "<server>x</server>"]))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config != nil)
        #expect(problems.map(\.description) == [
            "\(path):6: warning: unknown element <Foo> ignored",
            "\(path):7: warning: unknown element <server> ignored (element names are case-sensitive: <Server>)",
        ])
        #expect(problems.allSatisfy { $0.severity == .warning })
    }

    @Test func optionalElementsAreRead() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let secret = try folder.write("cluster.key", "0123456789abcdef0123456789abcdef\n")
        let template = try folder.write("unit.json", "{}")
        let path = try folder.write("docker_server.xml", serverXML(share: share, extra: [
            "<Manager>10.0.0.1:9100</Manager>", "<Secret>\(secret)</Secret>", "<Image>esproc:8</Image>",
            "<Template>\(template)</Template>", "<Docker>tcp://127.0.0.1:2375</Docker>",
            "<ReadyTimeout>3600</ReadyTimeout>", "<ConcurrentStarts>3</ConcurrentStarts>",
            "<EngineWorkers>16</EngineWorkers>", "<EngineStreams>512</EngineStreams>",
        ]))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(problems.isEmpty)
        let server = try #require(config)
        #expect(server.manager == HostPort(host: "10.0.0.1", port: 9100))
        #expect(server.secretFile == secret)
        #expect(server.image == "esproc:8")
        #expect(server.template == template)
        #expect(server.docker == "tcp://127.0.0.1:2375")
        #expect(server.readyTimeoutSeconds == 3600)
        #expect(server.concurrentStarts == 3)
        #expect(server.engineWorkers == 16 && server.engineStreams == 512)
        #expect(try server.readSecret() == Array("0123456789abcdef0123456789abcdef".utf8))
    }

    @Test func relativeSecretAndTemplateAreReadFromTheConfigFolder() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        try folder.write("cluster.key", "0123456789abcdef0123456789abcdef")
        _ = try folder.makeDirectory("templates")
        try folder.write("templates/unit.json", "{}")
        let path = try folder.write("docker_server.xml", serverXML(share: share, extra: [
            "<Secret>cluster.key</Secret>", "<Template>templates/unit.json</Template>",
        ]))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(problems.isEmpty)
        let server = try #require(config)
        let folderPath = URL(fileURLWithPath: folder.path).standardizedFileURL.path
        #expect(server.secretFile == folderPath + "/cluster.key")
        #expect(server.template == folderPath + "/templates/unit.json")
        #expect(try server.readSecret() == Array("0123456789abcdef0123456789abcdef".utf8))
    }

    @Test func secretOfOnlyWhitespaceIsEmpty() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let secret = try folder.write("cluster.key", " \n\n")
        let path = try folder.write("docker_server.xml", serverXML(share: share, extra: ["<Secret>\(secret)</Secret>"]))

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(errors(problems) == ["\(path):6: secret \(secret) is empty"])
    }

    @Test func readSecretTrimsOnlyTrailingWhitespace() throws {
        let folder = try TemporaryFolder()
        let secret = try folder.write("cluster.key", "  s3cret-0123456789abcdef0123456789abcdef \t\r\n\n")
        let config = ServerConfig(server: HostPort(host: "10.0.0.1", port: 9001), share: "/tmp", secretFile: secret)

        #expect(try config.readSecret() == Array("  s3cret-0123456789abcdef0123456789abcdef".utf8))
    }

    @Test func readSecretNamesTheFileWhenItCannotBeUsed() throws {
        let folder = try TemporaryFolder()
        let empty = try folder.write("empty.key", "")
        let missing = folder.path + "/missing.key"
        func message(_ secretFile: String?) -> String? {
            let config = ServerConfig(
                file: "/etc/berth/docker_server.xml", server: HostPort(host: "10.0.0.1", port: 9001), share: "/tmp",
                secretFile: secretFile)
            do throws(ConfigError) {
                _ = try config.readSecret()
                return nil
            } catch {
                return error.message
            }
        }

        let short = try folder.write("short.key", "0123456789abcdef0123456789abcde\n")
        let open = try folder.write("open.key", "\(String(repeating: "k", count: 40))\n")
        chmod(open, 0o640)
        #expect(message(empty) == "secret \(empty) is empty")
        #expect(message(short) == "secret \(short) is 31 bytes; use at least 32 random bytes (head -c 32 /dev/urandom | base64 > \(short))")
        #expect(message(open) == "secret \(open) is open to other users (mode 640); chmod 600 \(open)")
        #expect(message(missing) == "secret \(missing) is not readable: No such file or directory")
        #expect(message(nil) == "/etc/berth/docker_server.xml: no <Secret> is configured; add <Secret>/etc/berth/cluster.key</Secret>")
    }
}

// MARK: - docker_user.xml

/// One change to the example users and the one error it must give.
struct BadUsersCase: Sendable, CustomTestStringConvertible {
    var aaa: [String] = exampleAaa
    var bbb: [String] = exampleBbb
    var line: Int
    var message: String
    var testDescription: String { message }
}

@Suite("docker_user.xml validation")
struct UsersConfigTests {
    static let badCases: [BadUsersCase] = [
        BadUsersCase(aaa: replacing("<CPU>", with: "<CPU>1</CPU>", in: exampleAaa), line: 8,
                     message: #"CPU "1": must be an integer >= 2 (Docker CPU shares)"#),
        BadUsersCase(aaa: replacing("<CPU>", with: "<CPU>half</CPU>", in: exampleAaa), line: 8,
                     message: #"CPU "half": must be an integer >= 2 (Docker CPU shares)"#),
        BadUsersCase(bbb: replacing("<CPU>", with: "<CPU>-512</CPU>", in: exampleBbb), line: 17,
                     message: #"CPU "-512": must be an integer >= 2 (Docker CPU shares)"#),
        BadUsersCase(aaa: replacing("<Memory>", with: "<Memory>1.5g</Memory>", in: exampleAaa), line: 7,
                     message: #"memory "1.5g": use a whole number with k, m or g (e.g. 1536m)"#),
        BadUsersCase(aaa: replacing("<Memory>", with: "<Memory>500</Memory>", in: exampleAaa), line: 7,
                     message: #"memory "500": missing unit; write 500m for megabytes (or use k or g)"#),
        BadUsersCase(bbb: replacing("<Memory>", with: "<Memory>3m</Memory>", in: exampleBbb), line: 16,
                     message: #"memory "3m": the limit must be at least 4m"#),
        BadUsersCase(aaa: replacing("<Home>", with: "<Home>opt/app/aaa</Home>", in: exampleAaa), line: 9,
                     message: #"home "opt/app/aaa": must be an absolute path"#),
        BadUsersCase(aaa: replacing("<Home>", with: "<Home>/opt/app/../bbb</Home>", in: exampleAaa), line: 9,
                     message: #"home "/opt/app/../bbb": must not contain a .. component"#),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76:9001</Unit>", in: exampleAaa), line: 10,
                     message: "unit 192.168.0.76:9001 uses the communication port 9001"),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76:9000</Unit>", in: exampleAaa), line: 10,
                     message: "unit 192.168.0.76:9000 is the manager's address (<Manager> in SERVER)"),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76:0</Unit>", in: exampleAaa), line: 10,
                     message: #"unit "192.168.0.76:0": port 0 is out of range 1...65535"#),
        BadUsersCase(bbb: replacing("<Unit>", with: "<Unit>192.168.0.77:8282,192.168.0.77:65536</Unit>", in: exampleBbb), line: 19,
                     message: #"unit "192.168.0.77:65536": port 65536 is out of range 1...65535"#),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76</Unit>", in: exampleAaa), line: 10,
                     message: #"unit "192.168.0.76": missing port; expected ip:port"#),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76:8281,,192.168.0.76:8282</Unit>", in: exampleAaa), line: 10,
                     message: #"unit list "192.168.0.76:8281,,192.168.0.76:8282": an entry between commas is empty"#),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.76:8281 , 192.168.0.76:8281</Unit>", in: exampleAaa), line: 10,
                     message: "unit 192.168.0.76:8281 is listed twice for user aaa"),
        BadUsersCase(aaa: replacing("<Unit>", with: "<Unit>192.168.0.77:8282</Unit>", in: exampleAaa), line: 19,
                     message: "unit 192.168.0.77:8282 is assigned to both aaa (line 3) and bbb (line 12)"),
        BadUsersCase(bbb: replacing("<Name>", with: "<Name>aaa</Name>", in: exampleBbb), line: 13,
                     message: "duplicate user name aaa (first at line 3)"),
        BadUsersCase(aaa: replacing("<Name>", with: "<Name>a b</Name>", in: exampleAaa), line: 4,
                     message: #"user name "a b": use 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a Docker label and network name)"#),
        BadUsersCase(aaa: replacing("<Name>", with: "<Name>_aaa</Name>", in: exampleAaa), line: 4,
                     message: #"user name "_aaa": use 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a Docker label and network name)"#),
        BadUsersCase(aaa: replacing("<Name>", with: "<Name>\(String(repeating: "a", count: 33))</Name>", in: exampleAaa), line: 4,
                     message: #"user name "\#(String(repeating: "a", count: 33))": use 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a Docker label and network name)"#),
        BadUsersCase(aaa: replacing("<Name>", with: nil, in: exampleAaa), line: 3, message: "missing <Name> in <User>"),
        BadUsersCase(aaa: replacing("<Memory>", with: nil, in: exampleAaa), line: 3, message: "user aaa: missing <Memory>"),
        BadUsersCase(bbb: replacing("<CPU>", with: nil, in: exampleBbb), line: 12, message: "user bbb: missing <CPU>"),
        BadUsersCase(aaa: replacing("<Home>", with: nil, in: exampleAaa), line: 3, message: "user aaa: missing <Home>"),
        BadUsersCase(aaa: replacing("<Unit>", with: nil, in: exampleAaa), line: 3, message: "user aaa: missing <Unit>"),
        BadUsersCase(aaa: replacing("<Pwd>", with: nil, in: exampleAaa), line: 3,
                     message: "user aaa: missing <PwdHash> (or the legacy plain-text <Pwd>)"),
        BadUsersCase(aaa: replacing("<Pwd>", with: "<Pwd>1</Pwd><PwdHash>h</PwdHash>", in: exampleAaa), line: 6,
                     message: "user aaa: give <PwdHash> or <Pwd>, not both"),
        BadUsersCase(aaa: replacing("<Alias>", with: "<CPU>4</CPU>", in: exampleAaa), line: 8,
                     message: "duplicate <CPU> (first at line 5)"),
        BadUsersCase(aaa: replacing("<Alias>", with: "<Uid>0:2001</Uid>", in: exampleAaa), line: 5,
                     message: "user aaa: Uid 0:2001 is root's user or group; give the user's own account, e.g. 2001:2001"),
        BadUsersCase(aaa: replacing("<Alias>", with: "<Uid>2001:0</Uid>", in: exampleAaa), line: 5,
                     message: "user aaa: Uid 2001:0 is root's user or group; give the user's own account, e.g. 2001:2001"),
        BadUsersCase(aaa: replacing("<Alias>", with: "<Uid>2001</Uid>", in: exampleAaa), line: 5,
                     message: #"Uid "2001": must be uid:gid, two numbers (e.g. 2001:2001)"#),
        BadUsersCase(aaa: replacing("<Alias>", with: "<Uid>aaa:aaa</Uid>", in: exampleAaa), line: 5,
                     message: #"Uid "aaa:aaa": must be uid:gid, two numbers (e.g. 2001:2001)"#),
        BadUsersCase(bbb: replacing("<Home>", with: "<Home>/opt/app/aaa/bbb</Home>", in: exampleBbb), line: 18,
                     message: "user bbb: home /opt/app/aaa/bbb overlaps user aaa's home /opt/app/aaa (line 9); give each user a directory of their own"),
        BadUsersCase(bbb: replacing("<Home>", with: "<Home>/opt/app/aaa</Home>", in: exampleBbb), line: 18,
                     message: "user bbb: home /opt/app/aaa overlaps user aaa's home /opt/app/aaa (line 9); give each user a directory of their own"),
        BadUsersCase(bbb: replacing("<Home>", with: "<Home>/opt</Home>", in: exampleBbb), line: 18,
                     message: "user bbb: home /opt overlaps user aaa's home /opt/app/aaa (line 9); give each user a directory of their own"),
    ]

    @Test func aUidIsReadAndHomesMustLieBelowTheHomeRoot() throws {
        let folder = try TemporaryFolder()
        let homes = try folder.makeDirectory("homes")
        let share = try folder.makeDirectory("share")
        let serverPath = try folder.write("docker_server.xml", serverXML(share: share, extra: ["<HomeRoot>\(homes)/</HomeRoot>"]))
        let server = try #require(ServerConfig.load(path: serverPath).config)
        #expect(server.homeRoot == homes)
        let aaa = replacing("<Home>", with: "<Home>\(homes)/aaa</Home>", in: replacing("<Alias>", with: "<Uid>2001:2002</Uid>", in: exampleAaa))
        let bbb = replacing("<Home>", with: "<Home>\(homes)2/bbb</Home>", in: exampleBbb)
        let path = try folder.write("docker_user.xml", usersXML([aaa, bbb]))

        let (config, problems) = UsersConfig.load(path: path, server: server)

        #expect(errors(problems) == ["\(path):18: home \(homes)2/bbb is not below <HomeRoot> \(homes); agents refuse it"])
        #expect(config == nil)
        let fixed = try folder.write("docker_user.xml", usersXML([aaa, replacing("<Home>", with: "<Home>\(homes)/bbb</Home>", in: exampleBbb)]))
        let users = try #require(UsersConfig.load(path: fixed, server: server).config)
        #expect(users.user(named: "aaa")?.account == UnixAccount(uid: 2001, gid: 2002))
        #expect(users.user(named: "bbb")?.account == nil)
    }

    @Test(arguments: badCases)
    func oneBadValueGivesOneErrorAtItsLine(_ badCase: BadUsersCase) throws {
        let folder = try TemporaryFolder()
        let server = try exampleServer(in: folder)
        let path = try folder.write("docker_user.xml", usersXML([badCase.aaa, badCase.bbb]))

        let (config, problems) = UsersConfig.load(path: path, server: server)

        let message = badCase.message.replacingOccurrences(of: "SERVER", with: server.file)
        #expect(errors(problems) == ["\(path):\(badCase.line): \(message)"])
        #expect(config == nil)
    }

    @Test func everyProblemIsReportedInOnePassInFileOrder() throws {
        let folder = try TemporaryFolder()
        var aaa = replacing("<CPU>", with: "<CPU>1</CPU>", in: exampleAaa)
        aaa = replacing("<Memory>", with: "<Memory>1.5g</Memory>", in: aaa)
        aaa = replacing("<Unit>", with: "<Unit>192.168.0.77:8282, 192.168.0.76:9001</Unit>", in: aaa)
        var bbb = replacing("<Home>", with: "<Home>bbb</Home>", in: exampleBbb)
        bbb = replacing("<Alias>", with: "<Email>b@example.com</Email>", in: bbb)
        let path = try folder.write("docker_user.xml", usersXML([aaa, bbb]))

        let (config, problems) = UsersConfig.load(path: path, server: try exampleServer(in: folder))

        #expect(config == nil)
        #expect(problems.map(\.description) == [
            "\(path):6: warning: user aaa: plain-text <Pwd>; replace it with <PwdHash> from berth-manager hash-password",
            #"\#(path):7: memory "1.5g": use a whole number with k, m or g (e.g. 1536m)"#,
            #"\#(path):8: CPU "1": must be an integer >= 2 (Docker CPU shares)"#,
            "\(path):10: unit 192.168.0.76:9001 uses the communication port 9001",
            "\(path):14: warning: unknown element <Email> ignored",
            "\(path):15: warning: user bbb: plain-text <Pwd>; replace it with <PwdHash> from berth-manager hash-password",
            #"\#(path):18: home "bbb": must be an absolute path"#,
            "\(path):19: unit 192.168.0.77:8282 is assigned to both aaa (line 3) and bbb (line 12)",
        ])
    }

    @Test func warningsDoNotBlockLoading() throws {
        let folder = try TemporaryFolder()
        let aaa = replacing("<Alias>", with: "<Email>a@example.com</Email>", in: exampleAaa)
        let path = try folder.write("docker_user.xml", usersXML([aaa, exampleBbb]))

        let (config, problems) = UsersConfig.load(path: path, server: try exampleServer(in: folder))

        #expect(problems.count == 3)
        #expect(problems.allSatisfy { $0.severity == .warning })
        #expect(problems.first?.description == "\(path):5: warning: unknown element <Email> ignored")
        #expect(config?.user(named: "aaa")?.alias == nil)
    }

    @Test func hashedPasswordsAndOptionalFormsLoadWithoutProblems() throws {
        let folder = try TemporaryFolder()
        let ccc = [
            "<Name>ccc.dev-1</Name>", "<PwdHash>$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA</PwdHash>",
            "<Memory>1g,256m</Memory>", "<CPU>2</CPU>", "<Home>/opt/app/ccc/</Home>",
            "<Unit> 10.0.0.5:8281 ,10.0.0.6:8281,node-7.example:8281 </Unit>",
        ]
        let path = try folder.write("docker_user.xml", usersXML([ccc]))

        let (config, problems) = UsersConfig.load(path: path, server: try exampleServer(in: folder))

        #expect(problems.isEmpty)
        let user = try #require(config?.user(named: "ccc.dev-1"))
        #expect(user.alias == nil)
        #expect(user.password == .hash("$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA"))
        #expect(user.memory.newSizeBytes == 256 * 1024 * 1024)
        #expect(user.cpu == 2)
        #expect(user.units.map(\.description) == ["10.0.0.5:8281", "10.0.0.6:8281", "node-7.example:8281"])
    }

    @Test func withoutAServerConfigTheCommunicationPortIsNotChecked() throws {
        let folder = try TemporaryFolder()
        let aaa = replacing("<Unit>", with: "<Unit>192.168.0.76:9001</Unit>", in: exampleAaa)
        let path = try folder.write("docker_user.xml", usersXML([aaa]))

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(errors(problems).isEmpty)
        #expect(config?.users.first?.units == [HostPort(host: "192.168.0.76", port: 9001)])
    }

    @Test func escapedCharactersAndCDATAAreDecoded() throws {
        let folder = try TemporaryFolder()
        let aaa = replacing("<Pwd>", with: "<Pwd>a&amp;b&lt;c</Pwd>", in: replacing("<Alias>", with: "<Alias><![CDATA[张三 & Co]]></Alias>", in: exampleAaa))
        let path = try folder.write("docker_user.xml", usersXML([aaa]))

        let (config, _) = UsersConfig.load(path: path, server: nil)

        #expect(config?.user(named: "aaa")?.password == .plain("a&b<c"))
        #expect(config?.user(named: "aaa")?.alias == "张三 & Co")
    }

    @Test func aStartTagSpanningLinesIsLocatedAtItsFirstLine() throws {
        let folder = try TemporaryFolder()
        let text = """
            <Users>
              <User
                  id="1"
                  kind="person">
                <Name>aaa</Name><PwdHash>h</PwdHash><Memory>500m</Memory><CPU>512</CPU>
                <Home>/opt/app/aaa</Home><Unit
                  >192.168.0.76:8281</Unit>
              </User>
            </Users>
            """
        let path = try folder.write("docker_user.xml", text)

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(config?.users.first?.line == 2)
        #expect(problems.map(\.description) == [
            "\(path):2: warning: attribute id on <User> ignored",
            "\(path):2: warning: attribute kind on <User> ignored",
        ])
    }

    @Test func leftoverEllipsisPlaceholderIsWarnedAbout() throws {
        let folder = try TemporaryFolder()
        let text = "<Users>\n  <User><Name>aaa</Name><PwdHash>h</PwdHash><Memory>500m</Memory><CPU>512</CPU><Home>/a</Home><Unit>10.0.0.1:1</Unit></User>\n  。。。\n</Users>\n"
        let path = try folder.write("docker_user.xml", text)

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(config != nil)
        #expect(problems.map(\.description) == ["\(path):1: warning: text \"。。。\" inside <Users> ignored"])
    }

    @Test func wrongRootAndEmptyFileOfUsers() throws {
        let folder = try TemporaryFolder()
        let configPath = try folder.write("config.xml", "<Config/>")
        let emptyUsers = try folder.write("empty.xml", "<Users>\n</Users>\n")

        #expect(UsersConfig.load(path: configPath, server: nil).problems.map(\.description)
            == ["\(configPath):1: the root element must be <Users>, not <Config>"])
        let (config, problems) = UsersConfig.load(path: emptyUsers, server: nil)
        #expect(config?.users == [])
        #expect(problems.map(\.description) == ["\(emptyUsers):1: warning: no <User> in the file; nobody can log in"])
    }
}

// MARK: - Files that are not XML

@Suite("Unreadable and malformed files")
struct MalformedFileTests {
    @Test func mismatchedClosingTagIsOneProblemAtItsLine() throws {
        let folder = try TemporaryFolder()
        let aaa = replacing("<Alias>", with: "<Alias>张三</Alais>", in: exampleAaa)
        let path = try folder.write("docker_user.xml", usersXML([aaa, exampleBbb]))

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(config == nil)
        #expect(problems.map(\.description) == ["\(path):5: not well-formed XML: closing tag does not match <Alias> (line 5)"])
    }

    @Test func unclosedRootIsOneProblem() throws {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let path = try folder.write("docker_server.xml", "<Config>\n  <Server>192.168.0.76:9001</Server>\n  <Share>\(share)</Share>\n")

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(problems.count == 1)
        #expect(problems.first?.message == "not well-formed XML: <Config> (line 1) is never closed")
        #expect(problems.first?.severity == .error)
    }

    @Test func bareAmpersandIsOneProblem() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_server.xml", "<Config>\n  <Server>192.168.0.76:9001</Server>\n  <Share>/a & b</Share>\n</Config>\n")

        let (config, problems) = ServerConfig.load(path: path)

        #expect(config == nil)
        #expect(problems.map(\.description)
            == ["\(path):3: not well-formed XML: a name must follow '&' or '<' (write &amp; for a literal & and &lt; for <)"])
    }

    @Test func contentAfterTheRootIsOneProblem() throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_user.xml", "<Users>\n</Users>\n<Users>\n</Users>\n")

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(config == nil)
        #expect(problems.map(\.description) == ["\(path):3: not well-formed XML: content after the end of the root element"])
    }

    @Test(arguments: ["", "   \n  \n", xmlDeclaration + "\n"])
    func emptyDocumentIsOneProblem(_ text: String) throws {
        let folder = try TemporaryFolder()
        let path = try folder.write("docker_user.xml", text)

        let (config, problems) = UsersConfig.load(path: path, server: nil)

        #expect(config == nil)
        #expect(problems.count == 1)
        #expect(problems.first?.description.hasPrefix("\(path):") == true)
        #expect(problems.first?.message.hasPrefix("not well-formed XML: ") == true)
    }

    @Test func missingFileIsOneProblemForTheWholeFile() throws {
        let folder = try TemporaryFolder()
        let path = folder.path + "/absent.xml"

        let (server, serverProblems) = ServerConfig.load(path: path)
        let (users, userProblems) = UsersConfig.load(path: path, server: nil)

        #expect(server == nil && users == nil)
        #expect(serverProblems.map(\.description) == ["\(path): cannot read the file: No such file or directory"])
        #expect(userProblems == serverProblems)
    }
}

// MARK: - Values

@Suite("Memory values")
struct MemorySpecTests {
    struct Good: Sendable {
        var text: String
        var limitBytes: Int64
        var newSizeBytes: Int64
        var dockerMemory: String
        var javaNewSize: String
    }

    static let kilobyte: Int64 = 1024
    static let megabyte: Int64 = 1024 * 1024
    static let gigabyte: Int64 = 1024 * 1024 * 1024

    static let goodValues: [Good] = [
        Good(text: "4m", limitBytes: 4 * megabyte, newSizeBytes: 2 * megabyte, dockerMemory: "4m", javaNewSize: "2m"),
        Good(text: "500m", limitBytes: 500 * megabyte, newSizeBytes: 250 * megabyte, dockerMemory: "500m", javaNewSize: "250m"),
        Good(text: "1g", limitBytes: gigabyte, newSizeBytes: 512 * megabyte, dockerMemory: "1g", javaNewSize: "512m"),
        Good(text: "2G", limitBytes: 2 * gigabyte, newSizeBytes: gigabyte, dockerMemory: "2g", javaNewSize: "1g"),
        Good(text: "4096k", limitBytes: 4 * megabyte, newSizeBytes: 2 * megabyte, dockerMemory: "4096k", javaNewSize: "2m"),
        Good(text: "4097K", limitBytes: 4097 * kilobyte, newSizeBytes: 2048 * kilobyte, dockerMemory: "4097k", javaNewSize: "2m"),
        Good(text: "5m", limitBytes: 5 * megabyte, newSizeBytes: 2560 * kilobyte, dockerMemory: "5m", javaNewSize: "2560k"),
        Good(text: "1g,256m", limitBytes: gigabyte, newSizeBytes: 256 * megabyte, dockerMemory: "1g", javaNewSize: "256m"),
        Good(text: "1g, 1g", limitBytes: gigabyte, newSizeBytes: gigabyte, dockerMemory: "1g", javaNewSize: "1g"),
        Good(text: "2g,1536M", limitBytes: 2 * gigabyte, newSizeBytes: 1536 * megabyte, dockerMemory: "2g", javaNewSize: "1536m"),
    ]

    @Test(arguments: goodValues)
    func goodValueParses(_ good: Good) throws {
        let memory = try MemorySpec(parsing: good.text)
        #expect(memory.limitBytes == good.limitBytes)
        #expect(memory.newSizeBytes == good.newSizeBytes)
        #expect(memory.dockerMemory == good.dockerMemory)
        #expect(memory.javaNewSize == good.javaNewSize)
        #expect(memory.text == good.text)
    }

    static let badValues: [(String, String)] = [
        ("1.5g", #"memory "1.5g": use a whole number with k, m or g (e.g. 1536m)"#),
        ("0.5m", #"memory "0.5m": use a whole number with k, m or g (e.g. 512k)"#),
        ("1.3g", #"memory "1.3g": use a whole number with k, m or g (e.g. 500m)"#),
        ("500", #"memory "500": missing unit; write 500m for megabytes (or use k or g)"#),
        ("3m", #"memory "3m": the limit must be at least 4m"#),
        ("1024k", #"memory "1024k": the limit must be at least 4m"#),
        ("0m", #"memory "0m": the limit must be at least 4m"#),
        ("", #"memory "": empty; write m1[,m2] with k, m or g, e.g. 500m or 1g,256m"#),
        ("m", #"memory "m": missing number; write a whole number with k, m or g (e.g. 500m)"#),
        ("-1m", #"memory "-1m": must be a positive whole number with k, m or g (e.g. 500m)"#),
        ("500mb", #"memory "500mb": unknown unit "mb"; use k, m or g (e.g. 500m)"#),
        ("500t", #"memory "500t": unknown unit "t"; use k, m or g (e.g. 500m)"#),
        ("1g,2g", #"memory "1g,2g": the new-generation size 2g is larger than the limit 1g"#),
        ("1g,0m", #"memory "1g,0m": the new-generation size must be more than 0"#),
        ("1g,", #"memory "1g,": nothing after the comma; write m1,m2 (e.g. 1g,256m) or leave the comma out"#),
        (",256m", #"memory ",256m": the limit before the comma is missing; write m1[,m2], e.g. 1g,256m"#),
        ("1g,256m,8m", #"memory "1g,256m,8m": expected m1[,m2] (a limit and an optional new-generation size), e.g. 1g,256m"#),
        ("1g,256", #"memory "1g,256": new-generation size: missing unit; write 256m for megabytes (or use k or g)"#),
        ("9999999999g", #"memory "9999999999g": too large"#),
        ("99999999999999999999m", #"memory "99999999999999999999m": too large"#),
    ]

    @Test(arguments: badValues)
    func badValueIsRefusedWithWhatIsWrong(_ text: String, _ message: String) {
        #expect(throws: ConfigError.self) { try MemorySpec(parsing: text) }
        do throws(ConfigError) {
            _ = try MemorySpec(parsing: text)
        } catch {
            #expect(error.message == message)
            #expect(error.description == message)
        }
    }

    @Test func codableAsItsText() throws {
        let memory = try MemorySpec(parsing: "1g,256m")
        let encoded = try JSONEncoder().encode([memory])
        #expect(String(decoding: encoded, as: UTF8.self) == #"["1g,256m"]"#)
        #expect(try JSONDecoder().decode([MemorySpec].self, from: encoded) == [memory])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([MemorySpec].self, from: Data(#"["1.5g"]"#.utf8)) }
    }
}

@Suite("ip:port values")
struct HostPortTests {
    @Test(arguments: [
        ("192.168.0.76:8281", "192.168.0.76", 8281),
        ("10.0.0.1:1", "10.0.0.1", 1),
        ("0.0.0.0:65535", "0.0.0.0", 65535),
        (" 192.168.0.77:8282 ", "192.168.0.77", 8282),
        ("localhost:9000", "localhost", 9000),
        ("Node-A.Example.com:8281", "node-a.example.com", 8281),
        ("host1:08281", "host1", 8281),
    ])
    func goodAddressParses(_ text: String, _ host: String, _ port: Int) throws {
        let address = try #require(HostPort(parsing: text))
        #expect(address.host == host)
        #expect(address.port == port)
        #expect(address.description == "\(host):\(port)")
    }

    @Test(arguments: [
        "", "192.168.0.76", "192.168.0.76:", ":8281", "192.168.0.76:0", "192.168.0.76:65536",
        "192.168.0.76:99999999999999999999", "192.168.0.256:80", "192.168.0:80", "192.168.0.1.2:80",
        "192.168.0.076:80", "192.168.0.76:80x", "192.168.0.76:+80", "192.168.0.76:-1", "host name:80",
        "-host:80", "host-:80", "host..example:80", "[::1]:80", "::1:80", "a:b:c", "192.168.0.76:８０",
        "主机:80", "http://192.168.0.76:80",
    ])
    func junkIsRefused(_ text: String) {
        #expect(HostPort(parsing: text) == nil)
    }

    @Test func describesItselfAsHostColonPort() {
        #expect(HostPort(host: "192.168.0.76", port: 8281).description == "192.168.0.76:8281")
        #expect("\(HostPort(host: "node-a", port: 1))" == "node-a:1")
    }

    @Test func codableAsOneString() throws {
        let units = [HostPort(host: "192.168.0.77", port: 8282), HostPort(host: "node-a", port: 8283)]
        let encoded = try JSONEncoder().encode(units)
        #expect(String(decoding: encoded, as: UTF8.self) == #"["192.168.0.77:8282","node-a:8283"]"#)
        #expect(try JSONDecoder().decode([HostPort].self, from: encoded) == units)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([HostPort].self, from: Data(#"["192.168.0.77"]"#.utf8)) }
    }

    @Test func sortsAddressesNumericallyThenNamesThenPorts() {
        let sorted = ["b:1", "192.168.0.10:1", "a:5", "192.168.0.9:2", "192.168.0.9:1", "10.0.0.1:7"]
            .compactMap(HostPort.init(parsing:)).sorted()
        #expect(sorted.map(\.description) == ["10.0.0.1:7", "192.168.0.9:1", "192.168.0.9:2", "192.168.0.10:1", "a:5", "b:1"])
    }

    @Test func equalWhateverTheCaseOfTheHostName() {
        #expect(HostPort(parsing: "NODE-A:1") == HostPort(parsing: "node-a:1"))
        #expect(Set(["NODE-A:1", "node-a:1"].compactMap(HostPort.init(parsing:))).count == 1)
    }
}

@Suite("Problem messages")
struct ConfigProblemTests {
    @Test func describedLikeACompilerDiagnostic() {
        #expect(ConfigProblem(file: "docker_user.xml", line: 7, message: "bad").description == "docker_user.xml:7: bad")
        #expect(ConfigProblem(file: "docker_user.xml", line: 7, message: "odd", severity: .warning).description
            == "docker_user.xml:7: warning: odd")
        #expect(ConfigProblem(file: "docker_user.xml", line: 0, message: "gone").description == "docker_user.xml: gone")
    }
}

// MARK: - TLS and plain transports

@Suite("docker_server.xml transport")
struct TransportConfigTests {
    /// A server file for 192.168.0.76 with `extra` lines; its problems as `LINE: message`.
    func problems(_ extra: [String], server: String = "192.168.0.76:9001", nodeType: String? = "manager") throws -> [String] {
        let folder = try TemporaryFolder()
        let share = try folder.makeDirectory("share")
        let tls = try writeTLSFiles(in: folder.path, host: "192.168.0.76", manager: false)
        let text = serverXML(server: server, share: share, nodeType: nodeType, extra: extra.map { $0.replacingOccurrences(of: "TLS", with: tls) })
        let path = try folder.write("docker_server.xml", text)
        return ServerConfig.load(path: path).problems.map { "\($0.line): \($0.message)" }
    }

    @Test func tlsNeedsAllThreeFilesAndTheManagerNeedsAManagerCertificate() throws {
        #expect(try problems(["<CA>TLS/ca.crt</CA>"]) == [
            "6: TLS needs <CA>, <Cert> and <Key>; add <Cert> and <Key> (make them with berth-manager tls)",
        ])
        let all = ["<CA>TLS/ca.crt</CA>", "<Cert>TLS/192.168.0.76.crt</Cert>", "<Key>TLS/192.168.0.76.key</Key>"]
        #expect(try problems(all, nodeType: nil).isEmpty)
        #expect(try problems(all).first?.hasPrefix("7: ") == true)
        #expect(try problems(all).first?.hasSuffix("was not made for the manager: agents will refuse it; make one with berth-manager tls cert --manager") == true)
        #expect(try problems(["<CA>TLS/ca.crt</CA>", "<Cert>TLS/192.168.0.76.crt</Cert>", "<Key>TLS/nothing.key</Key>"], nodeType: nil).first?
            .contains("nothing.key: No such file or directory") == true)
    }

    @Test func plainHTTPOnANetworkAddressNeedsInsecure() throws {
        #expect(try problems(["<Insecure>false</Insecure>"], nodeType: nil) == [
            "3: 192.168.0.76:9001 is reachable from the network and no TLS is configured: add <CA>, <Cert> and <Key> (berth-manager tls), or <Insecure>true</Insecure> to send passwords and tokens in clear",
        ])
        #expect(try problems(["<Insecure>true</Insecure>"], nodeType: nil).isEmpty)
        #expect(try problems(["<Manager>127.0.0.1:9000</Manager>"], server: "127.0.0.2:9001").isEmpty)
        #expect(try problems(["<Manager>192.168.0.76:9000</Manager>", "<Insecure>false</Insecure>"], server: "127.0.0.2:9001") == [
            "6: 192.168.0.76:9000 is reachable from the network and no TLS is configured: add <CA>, <Cert> and <Key> (berth-manager tls), or <Insecure>true</Insecure> to send passwords and tokens in clear",
        ])
    }

    /// Docker's TCP socket without TLS gives root on its host to whoever reaches it.
    @Test func plainTCPToAnotherMachinesEngineIsRefused() throws {
        #expect(try problems(["<Docker>tcp://192.168.0.80:2375</Docker>"], nodeType: nil).contains(
            "5: docker tcp://192.168.0.80:2375: plain TCP to another machine gives anyone on the network root on it; add <DockerCerts> (ca.pem cert.pem key.pem), or use unix:///var/run/docker.sock"))
        #expect(try problems(["<Docker>tcp://127.0.0.1:2375</Docker>"], nodeType: nil).isEmpty)
        #expect(try problems(["<Docker>tcp://192.168.0.80:2376</Docker>", "<DockerCerts>TLS</DockerCerts>"], nodeType: nil).contains {
            $0.hasPrefix("6: DockerCerts ") && $0.hasSuffix("ca.pem is missing or unreadable (the folder needs ca.pem, cert.pem and key.pem)")
        })
    }
}
