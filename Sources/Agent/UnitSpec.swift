import BerthConfig
import BerthAPI
import BerthCore
import EngineAPI
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
    /// The unit's TLS certificate and key (PEM), made for this session, on hosts with TLS.
    var unitTLS: (certificate: String, key: String)?

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

    /// The template rendered for this unit, checked against `policy` (a placeholder's value is
    /// known only now), with Berth's settings merged over it.
    func createBody(template: UnitTemplate, policy: TemplatePolicy) throws -> [String: JSONValue] {
        var body = try template.render([
            "user": request.user, "ip": unit.host, "port": String(unit.port),
            "memory": memory.dockerMemory, "newsize": memory.javaNewSize, "cpu": String(request.cpu),
        ])
        var policy = policy
        policy.homes.append(request.home)
        let refused = UnitTemplate.problems(in: body, policy).filter { !$0.isWarning }
        guard refused.isEmpty else {
            throw AgentError("unit \(unit): template \(template.source) refused: \(refused.map(\.description).joined(separator: "; "))")
        }
        if body.members(matching: "Image").isEmpty { body.setField("Image", to: .string(defaultImage)) }
        if body.members(matching: "User").isEmpty { body.setField("User", to: .string(account.description)) }
        if body.members(matching: "WorkingDir").isEmpty { body.setField("WorkingDir", to: "/app") }
        body.setField("Tty", to: false)
        let own = ["BERTH_UNIT_SECRET", "BERTH_UNIT_TLS_CERT", "BERTH_UNIT_TLS_KEY"]
        let env = Self.strings(body.value(ofField: "Env")).filter { entry in !own.contains { entry == $0 || entry.hasPrefix($0 + "=") } }
        // The container's environment is readable by its own processes (the user's) and by the
        // engine's root: nobody else's. The key is the unit's alone and dies with the session.
        let tls = unitTLS.map { ["BERTH_UNIT_TLS_CERT=\($0.certificate)", "BERTH_UNIT_TLS_KEY=\($0.key)"] } ?? []
        body.setField("Env", to: Self.array(env + ["BERTH_UNIT_SECRET=\(request.unitSecret)"] + tls))
        body.setField("Labels", to: .object(labels(over: body.value(ofField: "Labels")?.objectValue ?? [:])))
        body.setField("ExposedPorts", to: [portSpec: [:]])
        body.setField("HostConfig", to: .object(hostConfig(over: body.value(ofField: "HostConfig")?.objectValue ?? [:])))
        body.setField("NetworkingConfig", to: nil)
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
        host.setField("Memory", to: .integer(memory.limitBytes))
        host.setField("CpuShares", to: .integer(Int64(request.cpu)))
        host.setField("Init", to: true)
        let binds = Self.strings(host.value(ofField: "Binds")).filter { !UnitTemplate.isBerthMount(target: Self.bindTarget($0)) }
        host.setField("Binds", to: Self.array(["\(share):/share:ro", "\(request.home):/app"] + binds))
        if let mounts = host.value(ofField: "Mounts")?.arrayValue {
            let target = { (mount: JSONValue) in mount.objectValue?.value(ofField: "Target")?.stringValue ?? "" }
            host.setField("Mounts", to: .array(mounts.filter { !UnitTemplate.isBerthMount(target: target($0)) }))
        }
        host.setField("PortBindings", to: [portSpec: [["HostIp": .string(unit.host), "HostPort": .string(String(unit.port))]]])
        host.setField("PublishAllPorts", to: false)
        host.setField("NetworkMode", to: .string(network))
        if host.members(matching: "PidsLimit").isEmpty { host.setField("PidsLimit", to: .integer(Self.defaultPidsLimit)) }
        host.setField("CapDrop", to: ["ALL"])
        host.setField("SecurityOpt", to: Self.array(Self.strings(host.value(ofField: "SecurityOpt")) + ["no-new-privileges"]))
        host.setField("LogConfig", to: ["Type": "json-file", "Config": ["max-size": .string(Self.logFileSize), "max-file": .string(Self.logFiles)]])
        host.setField("RestartPolicy", to: ["Name": "no"])
        host.setField("AutoRemove", to: false)
        return host
    }

    /// `SOURCE:TARGET[:OPTIONS]`'s target; a bind of one part is only a target (an anonymous volume).
    private static func bindTarget(_ bind: String) -> String {
        let parts = bind.split(separator: ":", omittingEmptySubsequences: false)
        return String(parts.count == 1 ? parts[0] : parts[1])
    }

    private static func strings(_ value: JSONValue?) -> [String] {
        value?.arrayValue?.compactMap(\.stringValue) ?? []
    }

    private static func array(_ strings: [String]) -> JSONValue {
        .array(strings.map { .string($0) })
    }
}
