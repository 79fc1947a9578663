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

/// Turns one unit of one user, the host's config and the template into the create body of a unit
/// container. The template is merged as raw JSON, so every field Berth does not set reaches Docker
/// as written; what Berth sets (limits, mounts, ports, network, account, confinement) replaces the
/// template's value under any spelling of its key, since Docker reads keys case-insensitively.
struct UnitSpec: Sendable {
    let request: StartUnitRequest
    let memory: MemorySpec
    let share: String
    let defaultImage: String
    let hostLabel: String
    let network: String
    /// Who the container runs as: the user's `<Uid>`, else the home's owner. A template may name
    /// root instead only where the host's policy allows it (checked when the template is loaded).
    let account: UnixAccount

    static let defaultPidsLimit: Int64 = 1024
    /// Docker's json-file log of a unit: at most `logFiles` files of `logFileSize` each, so a
    /// unit that writes without end fills no disk.
    static let logFileSize = "10m"
    static let logFiles = "3"

    var unit: HostPort { request.unit }
    var portSpec: String { "\(unit.port)/tcp" }

    /// `berth-<user>-<ip>-<port>`: one name per unit, so a stale container is found by name.
    var containerName: String { "berth-\(request.user)-\(unit.host)-\(unit.port)" }

    /// One bridge per user and agent (`berth-aaa-192.168.0.76-9001`). The agent's address is in the
    /// name because several agents may share one engine (test clusters, small sites), and each
    /// must own its networks as it owns its containers.
    static func networkName(user: String, agent: HostPort) -> String { "berth-\(user)-\(agent.host)-\(agent.port)" }

    func createBody(template: UnitTemplate) throws -> [String: JSONValue] {
        var body = try template.render([
            "user": request.user, "ip": unit.host, "port": String(unit.port),
            "memory": memory.dockerMemory, "newsize": memory.javaNewSize, "cpu": String(request.cpu),
        ])
        if body.value(forKey: "Image") == nil { body.set("Image", .string(defaultImage)) }
        if body.value(forKey: "User") == nil { body.set("User", .string(account.description)) }
        if body.value(forKey: "WorkingDir") == nil { body.set("WorkingDir", .string("/app")) }
        body.set("Tty", .bool(false))
        let env = body.value(forKey: "Env")?.strings.filter { !$0.hasPrefix("BERTH_UNIT_SECRET=") } ?? []
        body.set("Env", .strings(env + ["BERTH_UNIT_SECRET=\(request.unitSecret)"]))
        body.set("Labels", .object(labels(over: body.value(forKey: "Labels")?.objectValue ?? [:])))
        body.set("ExposedPorts", .object([portSpec: .object([:])]))
        body.set("HostConfig", .object(hostConfig(over: body.value(forKey: "HostConfig")?.objectValue ?? [:])))
        body.remove("NetworkingConfig")
        return body
    }

    private func labels(over template: [String: JSONValue]) -> [String: JSONValue] {
        var labels = template
        labels[UnitLabel.user] = .string(request.user)
        labels[UnitLabel.unit] = .string(unit.description)
        labels[UnitLabel.session] = .string(request.session)
        labels[UnitLabel.host] = .string(hostLabel)
        return labels
    }

    private func hostConfig(over template: [String: JSONValue]) -> [String: JSONValue] {
        var host = template
        host.set("Memory", .integer(memory.limitBytes))
        host.set("CpuShares", .integer(Int64(request.cpu)))
        host.set("Init", .bool(true))
        host.set("Binds", .strings(["\(share):/share:ro", "\(request.home):/app"] + extraBinds(host.value(forKey: "Binds")?.strings ?? [])))
        host.set("PortBindings", .object([portSpec: .array([.object(["HostIp": .string(unit.host), "HostPort": .string(String(unit.port))])])]))
        host.set("PublishAllPorts", .bool(false))
        host.set("NetworkMode", .string(network))
        if host.value(forKey: "PidsLimit") == nil { host.set("PidsLimit", .integer(Self.defaultPidsLimit)) }
        host.set("CapDrop", .strings(["ALL"]))
        let security = host.value(forKey: "SecurityOpt")?.strings ?? []
        host.set("SecurityOpt", .strings(security + ["no-new-privileges"]))
        host.set("LogConfig", .object(["Type": .string("json-file"), "Config": .object(["max-size": .string(Self.logFileSize), "max-file": .string(Self.logFiles)])]))
        host.set("RestartPolicy", .object(["Name": .string("no")]))
        host.set("AutoRemove", .bool(false))
        return host
    }

    /// The template's own binds, but none onto `/share` or `/app`, which are Berth's.
    private func extraBinds(_ binds: [String]) -> [String] {
        binds.filter { bind in
            let target = bind.split(separator: ":").dropFirst().first.map(String.init) ?? ""
            return !(target == "/share" || target.hasPrefix("/share/") || target == "/app" || target.hasPrefix("/app/"))
        }
    }
}

/// An agent failure worded for the person who will read it.
struct AgentError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
