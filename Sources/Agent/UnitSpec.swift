import BerthCore
import EngineAPI
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

/// An admin's container template: a JSON fragment of a Docker create body with
/// `{{user}} {{ip}} {{port}} {{memory}} {{newsize}} {{cpu}}` placeholders.
struct UnitTemplate: Sendable {
    static let placeholders = ["user", "ip", "port", "memory", "newsize", "cpu"]

    /// Where it came from, for error messages.
    let source: String
    let text: String

    /// The built-in default, the same as `Resources/templates/unit.json`.
    static let builtIn = UnitTemplate(source: "built-in unit template", text: """
        {
          "Image": "berth-unit:latest",
          "Cmd": ["/bin/berth-unit", "serve", "--port", "{{port}}"],
          "Env": ["BERTH_USER={{user}}", "BERTH_UNIT={{ip}}:{{port}}", "BERTH_CPU_SHARES={{cpu}}"]
        }
        """)

    /// Reads and checks a template file: valid JSON, a create body, no unknown placeholders.
    static func load(path: String) throws -> UnitTemplate {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw AgentError("template \(path) is not readable")
        }
        let template = UnitTemplate(source: path, text: String(decoding: data, as: UTF8.self))
        _ = try template.render(["user": "check", "ip": "127.0.0.1", "port": "1", "memory": "4m", "newsize": "2m", "cpu": "2"])
        return template
    }

    /// Where the first `{{` is (JSON itself never has two `{` in a row outside a string).
    private static func firstPlaceholderStart(in text: Substring) -> Substring.Index? {
        var index = text.startIndex
        while let open = text[index...].firstIndex(of: "{") {
            let next = text.index(after: open)
            if next < text.endIndex && text[next] == "{" { return open }
            index = next
        }
        return nil
    }

    func render(_ values: [String: String]) throws -> ContainerConfig {
        let known = "known: " + Self.placeholders.map { "{{\($0)}}" }.joined(separator: " ")
        var text = ""
        var rest = self.text[...]
        while let open = Self.firstPlaceholderStart(in: rest) {
            text += rest[..<open]
            let inside = rest[rest.index(open, offsetBy: 2)...]
            guard let close = inside.firstIndex(of: "}"), inside[close...].hasPrefix("}}") else {
                throw AgentError("\(source): unknown placeholder \(rest[open...].prefix(40)); \(known)")
            }
            let name = String(inside[..<close])
            guard Self.placeholders.contains(name) else {
                throw AgentError("\(source): unknown placeholder {{\(name)}}; \(known)")
            }
            text += values[name] ?? ""
            rest = inside[inside.index(close, offsetBy: 2)...]
        }
        text += rest
        do {
            return try EngineJSON.decoder.decode(ContainerConfig.self, from: Data(text.utf8))
        } catch {
            throw AgentError("\(source): not a Docker create body: \(error)")
        }
    }
}

/// Turns one unit of one user, the host's config and the template into the create body of
/// SPEC §4.2. The template adds image, command, env and user; it cannot loosen what Berth sets.
struct UnitSpec: Sendable {
    let request: StartUnitRequest
    let memory: MemorySpec
    let share: String
    let defaultImage: String
    let hostLabel: String
    let network: String
    /// The home's owner, who the container runs as unless the template names a user.
    let owner: (uid: UInt32, gid: UInt32)

    static let defaultPidsLimit: Int64 = 1024

    var unit: HostPort { request.unit }
    var portSpec: String { "\(unit.port)/tcp" }

    /// `berth-<user>-<ip>-<port>`: one name per unit, so a stale container is found by name.
    var containerName: String { "berth-\(request.user)-\(unit.host)-\(unit.port)" }

    /// One bridge per user and agent (`berth-aaa-192.168.0.76-9001`). The agent's address is in the
    /// name because several agents may share one engine (test clusters, small sites), and each
    /// must own its networks as it owns its containers.
    static func networkName(user: String, agent: HostPort) -> String { "berth-\(user)-\(agent.host)-\(agent.port)" }

    func createBody(template: UnitTemplate) throws -> ContainerConfig {
        var config = try template.render([
            "user": request.user, "ip": unit.host, "port": String(unit.port),
            "memory": memory.dockerMemory, "newsize": memory.javaNewSize, "cpu": String(request.cpu),
        ])
        config.image = config.image ?? defaultImage
        config.user = config.user ?? "\(owner.uid):\(owner.gid)"
        config.workingDir = config.workingDir ?? "/app"
        config.tty = false
        config.env = (config.env ?? []).filter { !$0.hasPrefix("BERTH_UNIT_SECRET=") } + ["BERTH_UNIT_SECRET=\(request.unitSecret)"]
        var labels = config.labels ?? [:]
        labels[UnitLabel.user] = request.user
        labels[UnitLabel.unit] = unit.description
        labels[UnitLabel.session] = request.session
        labels[UnitLabel.host] = hostLabel
        config.labels = labels
        config.exposedPorts = [portSpec: EmptyObject()]

        var host = config.hostConfig ?? HostConfig()
        host.memory = memory.limitBytes
        host.cpuShares = request.cpu
        host.`init` = true
        let extraBinds = (host.binds ?? []).filter { bind in
            let target = bind.split(separator: ":").dropFirst().first.map(String.init) ?? ""
            return !(target == "/share" || target.hasPrefix("/share/") || target == "/app" || target.hasPrefix("/app/"))
        }
        host.binds = ["\(share):/share:ro", "\(request.home):/app"] + extraBinds
        host.portBindings = [portSpec: [PortBinding(hostIp: unit.host, hostPort: String(unit.port))]]
        host.networkMode = network
        host.pidsLimit = host.pidsLimit ?? Self.defaultPidsLimit
        var security = host.securityOpt ?? []
        if !security.contains(where: { $0.hasPrefix("no-new-privileges") }) { security.append("no-new-privileges") }
        host.securityOpt = security
        host.restartPolicy = RestartPolicy.no
        host.autoRemove = false
        config.hostConfig = host
        config.networkingConfig = nil
        return config
    }
}

/// An agent failure worded for the person who will read it.
struct AgentError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
