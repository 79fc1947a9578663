import BerthAPI
import BerthCore
import BerthTLS
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A host's `docker_server.xml`: where its agent listens, the shared directory, whether it is the
/// entry host, and how to reach the manager and the Docker engine.
public struct ServerConfig: Sendable, Equatable {
    /// The file this was loaded from, for messages.
    public var file: String
    /// `<Server>`: this host's agent listens here; its port is the communication port.
    public var server: HostPort
    /// `<Share>`: an existing directory, mounted read-only at `/share` in every container.
    public var share: String
    /// `<NodeType>manager</NodeType>`: this is the entry host, where the manager runs.
    public var isManager: Bool
    /// `<Manager>`: where the manager listens for clients; `server.host:9000` by default.
    public var manager: HostPort
    /// `<Secret>`: the file holding the secret shared by the manager and the agents. A relative
    /// path is resolved against the configuration file's folder.
    public var secretFile: String?
    /// `<Image>`: the image of unit containers unless the template names another.
    public var image: String
    /// `<Template>`: the container template (JSON); relative paths as for `secretFile`.
    public var template: String?
    /// `<Docker>`: the engine's endpoint, `unix://PATH` or `tcp://HOST:PORT`.
    public var docker: String
    /// `<ReadyTimeout>`: how long a starting unit may take to accept connections.
    public var readyTimeoutSeconds: Int
    /// `<ConcurrentStarts>`: how many units this host's agent has the engine start at once;
    /// further starts wait in line, and the logging-in user sees their place. An engine gets
    /// little faster in total past a few starts at once, so a line lets the first users in sooner.
    public var concurrentStarts: Int
    /// `<HomeRoot>`: the agent accepts only homes strictly below this directory, and templates
    /// may bind nothing from it. Nil accepts any absolute home but `/`.
    public var homeRoot: String?
    /// `<AllowRootUnits>true</AllowRootUnits>`: a template may set `"User"` to root. Off by
    /// default: root in a unit owns every file it plants in the home, a host directory.
    public var allowRootUnits: Bool
    /// `<LogDir>`: the agent's own directory for unit logs that cannot be saved in a home safely.
    public var logDirectory: String
    /// `<CA>`, `<Cert>`, `<Key>`: with them, every connection to and from this host is TLS.
    public var tls: TLSFiles?
    /// `<Insecure>true</Insecure>`: serve plain HTTP on an address others can reach.
    public var insecure: Bool
    /// `<DockerCerts>`: the folder of `ca.pem`, `cert.pem` and `key.pem` for `<Docker>tcp://…`.
    public var dockerCerts: String?
    /// `<EngineWorkers>`: engine requests answered whole (create, start, stop, inspect) the agent
    /// has in flight at once; more wait in line, each within its own timeout.
    public var engineWorkers: Int
    /// `<EngineStreams>`: engine streams (followed logs, exec output) the agent has open at once,
    /// on threads of their own, so that they never hold up the requests above.
    public var engineStreams: Int

    /// The port every host's agent listens on.
    public var communicationPort: Int { server.port }

    public static let defaultManagerPort = 9000
    public static let defaultImage = "berth-unit:latest"
    public static let defaultDocker = "unix:///var/run/docker.sock"
    public static let defaultReadyTimeoutSeconds = 60
    public static let readyTimeoutRange = 1...3600
    /// One start per core of this host, at least 2: a container start keeps the engine busy on a
    /// core (see docs/performance.md, start slots).
    public static let defaultConcurrentStarts = max(2, ProcessInfo.processInfo.activeProcessorCount)
    public static let concurrentStartsRange = 1...256
    public static let defaultEngineWorkers = 64
    public static let defaultEngineStreams = 256
    public static let engineThreadsRange = 1...4096
    public static let defaultLogDirectory = "/var/log/berth"
    /// A cluster secret shorter than this is guessable offline from one signed request.
    public static let minimumSecretBytes = 32

    /// Builds a configuration directly (tests, tools); `load(path:)` is the validating way in.
    public init(
        file: String = "docker_server.xml", server: HostPort, share: String, isManager: Bool = false,
        manager: HostPort? = nil, secretFile: String? = nil, image: String = ServerConfig.defaultImage,
        template: String? = nil, docker: String = ServerConfig.defaultDocker,
        readyTimeoutSeconds: Int = ServerConfig.defaultReadyTimeoutSeconds,
        concurrentStarts: Int = ServerConfig.defaultConcurrentStarts, homeRoot: String? = nil, allowRootUnits: Bool = false,
        logDirectory: String = ServerConfig.defaultLogDirectory, tls: TLSFiles? = nil, insecure: Bool = false, dockerCerts: String? = nil,
        engineWorkers: Int = ServerConfig.defaultEngineWorkers, engineStreams: Int = ServerConfig.defaultEngineStreams
    ) {
        self.engineWorkers = engineWorkers
        self.engineStreams = engineStreams
        self.tls = tls
        self.insecure = insecure
        self.dockerCerts = dockerCerts
        self.file = file
        self.server = server
        self.share = share
        self.isManager = isManager
        self.manager = manager ?? HostPort(host: server.host, port: ServerConfig.defaultManagerPort)
        self.secretFile = secretFile
        self.image = image
        self.template = template
        self.docker = docker
        self.readyTimeoutSeconds = readyTimeoutSeconds
        self.concurrentStarts = concurrentStarts
        self.homeRoot = homeRoot
        self.allowRootUnits = allowRootUnits
        self.logDirectory = logDirectory
    }

    static let elementNames = [
        "Server", "Share", "NodeType", "Manager", "Secret", "Image", "Template", "Docker", "ReadyTimeout", "ConcurrentStarts",
        "HomeRoot", "AllowRootUnits", "LogDir", "CA", "Cert", "Key", "Insecure", "DockerCerts", "EngineWorkers", "EngineStreams",
    ]

    /// Loads and validates; returns the config only if there is no error (warnings allowed), plus every problem found.
    public static func load(path: String) -> (config: ServerConfig?, problems: [ConfigProblem]) {
        let root: LineXMLElement
        switch LineXML.load(path: path) {
        case .failure(let unusable): return (nil, [unusable.problem])
        case .success(let element): root = element
        }
        var problems = ConfigProblemList(file: path)
        guard root.name == "Config" else {
            problems.error(line: root.line, "the root element must be <Config>, not <\(root.name)>")
            return (nil, problems.inFileOrder)
        }
        var reader = ServerConfigReader(path: path, root: root, problems: problems)
        let config = reader.read()
        problems = reader.problems
        return (problems.hasErrors ? nil : config, problems.inFileOrder)
    }

    /// The secret's bytes (file contents, trailing whitespace trimmed); throws ConfigError naming the file when unreadable or empty.
    public func readSecret() throws(ConfigError) -> [UInt8] {
        guard let secretFile else {
            throw ConfigError("\(file): no <Secret> is configured; add <Secret>/etc/berth/cluster.key</Secret>")
        }
        return try ServerConfig.readSecret(at: secretFile)
    }

    /// Trailing whitespace is dropped because `echo … > key` and editors add a newline that the
    /// other hosts' copies may not have.
    static func readSecret(at path: String) throws(ConfigError) -> [UInt8] {
        var bytes: [UInt8]
        do throws(ConfigError) {
            bytes = try ConfigFileReader.contents(of: path)
        } catch {
            throw ConfigError("secret \(path) is not readable: \(error.message)")
        }
        guard bytes.count <= ConfigFileReader.maximumSize else {
            throw ConfigError("secret \(path) is over \(ConfigFileReader.maximumSize >> 20) MB; is it the right file? (a key of 32 random bytes is enough)")
        }
        while let last = bytes.last, [0x20, 0x09, 0x0A, 0x0D].contains(last) {
            bytes.removeLast()
        }
        guard !bytes.isEmpty else {
            throw ConfigError("secret \(path) is empty")
        }
        guard bytes.count >= minimumSecretBytes else {
            throw ConfigError("secret \(path) is \(bytes.count) bytes; use at least \(minimumSecretBytes) random bytes (head -c 32 /dev/urandom | base64 > \(path))")
        }
        try checkSecretMode(path)
        return bytes
    }
}

extension ServerConfig {
    /// Anyone who reads the secret can sign requests that agents obey as root.
    static func checkSecretMode(_ path: String) throws(ConfigError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ConfigError("secret \(path) is not readable: \(String(cString: strerror(errno)))")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw ConfigError("secret \(path) is open to other users (mode \(String(mode, radix: 8))); chmod 600 \(path)")
        }
    }
}

/// Validates the elements of one `docker_server.xml`, collecting every problem.
private struct ServerConfigReader {
    let path: String
    let root: LineXMLElement
    var problems: ConfigProblemList

    mutating func read() -> ServerConfig? {
        let elements = root.valueChildren(known: ServerConfig.elementNames, problems: &problems)

        let server = readServer(elements["Server"])
        let share = readShare(elements["Share"])
        let isManager = readNodeType(elements["NodeType"])
        let manager = readManager(elements["Manager"], server: server)
        let secretFile = elements["Secret"].flatMap { readSecret($0) }
        let image = elements["Image"].map { readImage($0) } ?? ServerConfig.defaultImage
        let template = elements["Template"].flatMap { readTemplate($0) }
        let docker = elements["Docker"].map { readDocker($0) } ?? ServerConfig.defaultDocker
        let readyTimeout = elements["ReadyTimeout"].map { readReadyTimeout($0) } ?? ServerConfig.defaultReadyTimeoutSeconds
        let concurrentStarts = elements["ConcurrentStarts"].map { readConcurrentStarts($0) } ?? ServerConfig.defaultConcurrentStarts
        let homeRoot = elements["HomeRoot"].flatMap { readHomeRoot($0) }
        let allowRootUnits = elements["AllowRootUnits"].map { readFlag($0) } ?? false
        let logDirectory = elements["LogDir"].flatMap { readLogDirectory($0) } ?? ServerConfig.defaultLogDirectory
        let tls = readTLS(ca: elements["CA"], certificate: elements["Cert"], key: elements["Key"], isManager: isManager)
        let insecure = elements["Insecure"].map { readFlag($0) } ?? false
        let dockerCerts = elements["DockerCerts"].flatMap { readDockerCerts($0) }
        let engineWorkers = elements["EngineWorkers"].map { readEngineThreads($0, default: ServerConfig.defaultEngineWorkers) }
            ?? ServerConfig.defaultEngineWorkers
        let engineStreams = elements["EngineStreams"].map { readEngineThreads($0, default: ServerConfig.defaultEngineStreams) }
            ?? ServerConfig.defaultEngineStreams

        guard let server, let share, let manager else { return nil }
        checkPlainHTTP(
            served: [(elements["Server"], server)] + (isManager ? [(elements["Manager"], manager)] : []),
            tls: tls != nil || ["CA", "Cert", "Key"].contains { elements[$0] != nil }, insecure: insecure)
        checkDockerTransport(elements["Docker"], docker, dockerCerts: dockerCerts)
        return ServerConfig(
            file: path, server: server, share: share, isManager: isManager, manager: manager,
            secretFile: secretFile, image: image, template: template, docker: docker,
            readyTimeoutSeconds: readyTimeout, concurrentStarts: concurrentStarts, homeRoot: homeRoot,
            allowRootUnits: allowRootUnits, logDirectory: logDirectory, tls: tls, insecure: insecure, dockerCerts: dockerCerts,
            engineWorkers: engineWorkers, engineStreams: engineStreams)
    }

    /// All three or none; each file readable and what it should be (a key only its owner reads,
    /// a certificate the CA signed and that has not expired).
    private mutating func readTLS(ca: LineXMLElement?, certificate: LineXMLElement?, key: LineXMLElement?, isManager: Bool) -> TLSFiles? {
        let given = [("CA", ca), ("Cert", certificate), ("Key", key)]
        let present = given.filter { $0.1 != nil }
        guard !present.isEmpty else { return nil }
        guard present.count == 3, let ca, let certificate, let key else {
            let missing = given.filter { $0.1 == nil }.map { "<\($0.0)>" }.joined(separator: " and ")
            problems.error(line: present[0].1!.line, "TLS needs <CA>, <Cert> and <Key>; add \(missing) (make them with berth-manager tls)")
            return nil
        }
        for element in [ca, certificate, key] where element.value.isEmpty {
            problems.error(line: element.line, "<\(element.name)> is empty; give a PEM file")
            return nil
        }
        let files = TLSFiles(ca: resolve(ca.value), certificate: resolve(certificate.value), key: resolve(key.value))
        do throws(TLSFileError) {
            let material = try files.load()
            if isManager && !material.isManagerCertificate {
                problems.error(line: certificate.line,
                    "\(files.certificate) was not made for the manager: agents will refuse it; make one with berth-manager tls cert --manager")
            }
        } catch {
            problems.error(line: certificate.line, error.description)
        }
        return files
    }

    /// Plain HTTP only where nobody else can listen in, unless the admin says otherwise.
    private mutating func checkPlainHTTP(served: [(LineXMLElement?, HostPort)], tls: Bool, insecure: Bool) {
        guard !tls, !insecure else { return }
        for (element, address) in served where !address.isLoopback {
            problems.error(line: element?.line ?? root.line,
                "\(address) is reachable from the network and no TLS is configured: add <CA>, <Cert> and <Key> (berth-manager tls), or <Insecure>true</Insecure> to send passwords and tokens in clear")
        }
    }

    /// A Docker engine on TCP answers whoever connects: only with TLS client certificates, or on loopback.
    private mutating func checkDockerTransport(_ element: LineXMLElement?, _ docker: String, dockerCerts: String?) {
        guard dockerCerts == nil, let endpoint = try? HTTPEndpoint(parsing: docker),
              case .tcp(let host, let port) = endpoint.kind, !HostPort(host: host, port: port).isLoopback else { return }
        problems.error(line: element?.line ?? root.line,
            "docker \(docker): plain TCP to another machine gives anyone on the network root on it; add <DockerCerts> (ca.pem cert.pem key.pem), or use unix:///var/run/docker.sock")
    }

    private mutating func readDockerCerts(_ element: LineXMLElement) -> String? {
        let folder = resolve(element.value)
        for name in ["ca.pem", "cert.pem", "key.pem"] where !FileManager.default.isReadableFile(atPath: folder + "/" + name) {
            problems.error(line: element.line, "DockerCerts \(folder): \(name) is missing or unreadable (the folder needs ca.pem, cert.pem and key.pem)")
            return nil
        }
        return folder
    }

    private mutating func readServer(_ element: LineXMLElement?) -> HostPort? {
        guard let element else {
            problems.error(line: root.line, "missing <Server> (the ip:port this host's agent listens on, e.g. 192.168.0.76:9001)")
            return nil
        }
        do throws(ConfigError) {
            return try HostPort.parse(element.value)
        } catch {
            problems.error(line: element.line, "server \"\(element.value)\": \(error.message)")
            return nil
        }
    }

    private mutating func readShare(_ element: LineXMLElement?) -> String? {
        guard let element else {
            problems.error(line: root.line, "missing <Share> (the directory mounted read-only at /share in every container)")
            return nil
        }
        let share = element.value
        guard !share.isEmpty else {
            problems.error(line: element.line, "<Share> is empty; give the directory mounted read-only at /share")
            return nil
        }
        guard share.hasPrefix("/") else {
            problems.error(line: element.line, "share \"\(share)\": must be an absolute path")
            return nil
        }
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: share, isDirectory: &isDirectory) else {
            problems.error(line: element.line, "share \(share) does not exist")
            return nil
        }
        guard isDirectory else {
            problems.error(line: element.line, "share \(share) is not a directory")
            return nil
        }
        return share
    }

    private mutating func readNodeType(_ element: LineXMLElement?) -> Bool {
        guard let element else { return false }
        guard element.value == "manager" else {
            problems.error(line: element.line,
                "NodeType \"\(element.value)\": the only value is manager (leave <NodeType> out on the other hosts)")
            return false
        }
        return true
    }

    /// Every host runs an agent on the communication port, the manager's host included, so the
    /// manager cannot listen on that port too.
    private mutating func readManager(_ element: LineXMLElement?, server: HostPort?) -> HostPort? {
        guard let element else {
            guard let server else { return nil }
            let manager = HostPort(host: server.host, port: ServerConfig.defaultManagerPort)
            if manager.port == server.port {
                problems.error(line: root.line,
                    "the default manager address \(manager) uses the communication port \(server.port); add <Manager> with another port")
            }
            return manager
        }
        let manager: HostPort
        do throws(ConfigError) {
            manager = try HostPort.parse(element.value)
        } catch {
            problems.error(line: element.line, "manager \"\(element.value)\": \(error.message)")
            return nil
        }
        if let server, manager.port == server.port {
            problems.error(line: element.line, "manager \(manager) uses the communication port \(server.port)")
        }
        return manager
    }

    /// Relative paths are resolved against the file's folder, because the daemons run from `/`
    /// under systemd and a path relative to that would surprise.
    private func resolve(_ path: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let folder = URL(fileURLWithPath: self.path).deletingLastPathComponent()
        return folder.appendingPathComponent(path).standardizedFileURL.path
    }

    private mutating func readSecret(_ element: LineXMLElement) -> String? {
        guard !element.value.isEmpty else {
            problems.error(line: element.line, "<Secret> is empty; give the file holding the cluster secret")
            return nil
        }
        let secretFile = resolve(element.value)
        do throws(ConfigError) {
            _ = try ServerConfig.readSecret(at: secretFile)
        } catch {
            problems.error(line: element.line, error.message)
        }
        return secretFile
    }

    private mutating func readImage(_ element: LineXMLElement) -> String {
        let image = element.value
        if image.isEmpty {
            problems.error(line: element.line, "<Image> is empty; leave it out to use \(ServerConfig.defaultImage)")
        } else if image.contains(where: \.isWhitespace) {
            problems.error(line: element.line, "image \"\(image)\": must not contain spaces")
        }
        return image
    }

    private mutating func readTemplate(_ element: LineXMLElement) -> String? {
        guard !element.value.isEmpty else {
            problems.error(line: element.line, "<Template> is empty; leave it out to use the built-in template")
            return nil
        }
        let template = resolve(element.value)
        var isDirectory = false
        if !FileManager.default.fileExists(atPath: template, isDirectory: &isDirectory) {
            problems.error(line: element.line, "template \(template) does not exist")
        } else if isDirectory {
            problems.error(line: element.line, "template \(template) is a directory, not a file")
        }
        return template
    }

    private mutating func readDocker(_ element: LineXMLElement) -> String {
        let docker = element.value
        let scheme = ["unix://", "tcp://"].first { docker.hasPrefix($0) }
        if let scheme {
            if docker.count == scheme.count {
                problems.error(line: element.line, "docker \"\(docker)\": missing the \(scheme == "unix://" ? "socket path" : "host:port") after \(scheme)")
            } else if case .invalidEndpoint(_, let reason)? = Self.endpointProblem(docker) {
                // The same reading the agent gives it at start, so what passes here serves.
                problems.error(line: element.line, "docker \"\(docker)\": \(reason)")
            }
        } else {
            problems.error(line: element.line, "docker \"\(docker)\": must start with unix:// or tcp://")
        }
        return docker
    }

    private static func endpointProblem(_ text: String) -> HTTPClientError? {
        do {
            _ = try HTTPEndpoint(parsing: text)
            return nil
        } catch {
            return error as? HTTPClientError
        }
    }

    private mutating func readReadyTimeout(_ element: LineXMLElement) -> Int {
        let text = element.value
        guard ConfigSyntax.isDigits(text), let seconds = Int(text), ServerConfig.readyTimeoutRange.contains(seconds) else {
            problems.error(line: element.line, "ReadyTimeout \"\(text)\": must be a whole number of seconds from 1 to 3600")
            return ServerConfig.defaultReadyTimeoutSeconds
        }
        return seconds
    }

    private mutating func readEngineThreads(_ element: LineXMLElement, default fallback: Int) -> Int {
        let text = element.value
        guard ConfigSyntax.isDigits(text), let count = Int(text), ServerConfig.engineThreadsRange.contains(count) else {
            problems.error(line: element.line, "\(element.name) \"\(text)\": must be a whole number from 1 to 4096")
            return fallback
        }
        return count
    }

    private mutating func readConcurrentStarts(_ element: LineXMLElement) -> Int {
        let text = element.value
        guard ConfigSyntax.isDigits(text), let starts = Int(text), ServerConfig.concurrentStartsRange.contains(starts) else {
            problems.error(line: element.line, "ConcurrentStarts \"\(text)\": must be a whole number from 1 to 256")
            return ServerConfig.defaultConcurrentStarts
        }
        return starts
    }

    /// Kept as written: homes are given below it in the same words. An agent resolves it (the
    /// admin's symlinks) and follows nothing below it.
    private mutating func readHomeRoot(_ element: LineXMLElement) -> String? {
        var path = element.value
        while path.count > 1, path.hasSuffix("/") { path.removeLast() }
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            problems.error(line: element.line, "HomeRoot \"\(element.value)\": must be an absolute path without . or ..")
            return nil
        }
        guard path != "/" else {
            problems.error(line: element.line, "HomeRoot is /; give the directory that holds the users' homes, e.g. /opt/app")
            return nil
        }
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory else {
            problems.error(line: element.line, "HomeRoot \(path) is not an existing directory")
            return nil
        }
        return path
    }

    private mutating func readFlag(_ element: LineXMLElement) -> Bool {
        switch element.value {
        case "true": return true
        case "false": return false
        default:
            problems.error(line: element.line, "<\(element.name)> \"\(element.value)\": must be true or false")
            return false
        }
    }

    private mutating func readLogDirectory(_ element: LineXMLElement) -> String? {
        guard element.value.hasPrefix("/") else {
            problems.error(line: element.line, "LogDir \"\(element.value)\": must be an absolute path")
            return nil
        }
        return element.value
    }
}
