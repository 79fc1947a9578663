import BerthAPI
import BerthCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a template is checked against: where users' homes are and who may run as root.
public struct TemplatePolicy: Sendable, Equatable {
    /// `<HomeRoot>`: nothing at, below or above it may be bound into a unit.
    public var homeRoot: String?
    /// The users' homes, as far as they are known (on the entry host; empty on agents).
    public var homes: [String]
    /// `<AllowRootUnits>`: a template may set `"User"` to root.
    public var allowRootUnits: Bool
    /// The engine remaps users (userns-remap), so root in a unit is not root on the host.
    public var engineRemapsUsers: Bool

    /// `PidsLimit` a template may set.
    public static let pidsLimits: ClosedRange<Int64> = 1...4096

    public init(homeRoot: String? = nil, homes: [String] = [], allowRootUnits: Bool = false, engineRemapsUsers: Bool = false) {
        self.homeRoot = homeRoot
        self.homes = homes
        self.allowRootUnits = allowRootUnits
        self.engineRemapsUsers = engineRemapsUsers
    }

    var allowsRoot: Bool { allowRootUnits || engineRemapsUsers }
}

/// One finding about a template, naming the field of the create body it is about
/// (`HostConfig.CapAdd`); an error refuses the template, a warning says Berth replaces the value.
public struct TemplateProblem: Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String
    public var isWarning: Bool

    public init(field: String, message: String, isWarning: Bool) {
        self.field = field
        self.message = message
        self.isWarning = isWarning
    }

    /// `HostConfig.CapAdd: message`, or `warning: HostConfig.Memory: message`; the caller puts
    /// the template's file in front.
    public var description: String {
        let located = field.isEmpty ? message : "\(field): \(message)"
        return isWarning ? "warning: \(located)" : located
    }
}

/// Walks a rendered create body and gathers every setting that would loosen a unit's
/// confinement. Docker's decoder reads keys without regard to case, so fields are
/// matched on folded keys, and two spellings of one field are refused as ambiguous.
struct TemplateCheck {
    let policy: TemplatePolicy
    private(set) var problems: [TemplateProblem] = []

    init(policy: TemplatePolicy) {
        self.policy = policy
    }

    /// The top-level fields of a create body (Docker's `Config` and the two it nests).
    static let createBodyFields = [
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
        "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
        "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell",
        "HostConfig", "NetworkingConfig",
    ]

    /// The `HostConfig` fields that are refused; old engines also read them at the top level.
    static let refusedHostFields = [
        "Privileged", "CapAdd", "Capabilities", "Devices", "DeviceCgroupRules", "DeviceRequests", "PidMode", "IpcMode",
        "UsernsMode", "UTSMode", "CgroupnsMode", "Cgroup", "NetworkMode", "SecurityOpt", "PidsLimit", "Binds", "Mounts",
        "VolumesFrom", "LogConfig", "MaskedPaths", "ReadonlyPaths", "GroupAdd",
    ]

    /// Berth's own settings: the template's value is replaced.
    static let replacedHostFields: [String: String] = [
        "Memory": "Berth sets it from the user's <Memory>",
        "CpuShares": "Berth sets it from the user's <CPU>",
        "Init": "Berth sets it to true",
        "PortBindings": "Berth publishes only the unit's ip:port",
        "PublishAllPorts": "Berth publishes only the unit's ip:port",
        "RestartPolicy": "Berth sets no restart: the agent starts and removes units",
        "AutoRemove": "Berth sets it to false: the agent removes units",
        "CapDrop": "Berth drops ALL capabilities (CapAdd may add NET_BIND_SERVICE back)",
    ]

    static let replacedTopLevelFields: [String: String] = [
        "ExposedPorts": "Berth exposes only the unit's port",
        "Tty": "Berth sets it to false, so that a unit's output and errors stay apart",
        "NetworkingConfig": "Berth connects the unit to its user's own network",
    ]

    /// The kernel's views: `/proc/self/root` is the host's root as the engine, which makes the
    /// mount, sees it, and `/dev` and `/sys` reach devices and kernel settings.
    static let kernelPaths = ["/proc", "/sys", "/dev"]

    /// The engine's socket and state: a unit that reaches them controls every container and the host.
    static let enginePaths = [
        "/var/run/docker.sock", "/run/docker.sock", "/var/run/docker", "/run/docker", "/var/run/containerd",
        "/run/containerd", "/var/lib/docker", "/var/lib/containerd",
    ]

    // MARK: - The create body

    mutating func createBody(_ body: [String: JSONValue]) {
        refuseKeysDifferingOnlyInCase(body, in: "", known: Self.createBodyFields + Self.refusedHostFields)
        let refusedHere = Dictionary(uniqueKeysWithValues: Self.refusedHostFields.map { (JSONValue.foldedKey($0), $0) })
        let replaced = Dictionary(uniqueKeysWithValues: Self.replacedTopLevelFields.map { (JSONValue.foldedKey($0.key), $0) })
        for (key, value) in body.sorted(by: { $0.key < $1.key }) {
            let folded = JSONValue.foldedKey(key)
            switch folded {
            case "hostconfig": hostConfig(value)
            case "user": user(value)
            case "labels": labels(value)
            case "env": env(value)
            case "workingdir": workingDir(value)
            default:
                if let field = replaced[folded] {
                    warn(field.key, "\(field.value); the template's value is replaced")
                } else if let name = refusedHere[folded] {
                    refuse(name, "a HostConfig setting: move it into HostConfig (current engines ignore it here, old ones read it)")
                }
            }
        }
    }

    private mutating func user(_ value: JSONValue) {
        let field = "User"
        if policy.allowsRoot, let user = value.stringValue, Self.isRoot(user) { return }
        if let user = value.stringValue, Self.isRoot(user) {
            refuse(field, "units run as the user's <Uid> or the home's owner; root (\(quoted(value))) only with <AllowRootUnits>true</AllowRootUnits> in docker_server.xml or an engine that remaps users")
        } else {
            refuse(field, "units run as the user's <Uid> or the home's owner; leave User out, not \(quoted(value))")
        }
    }

    /// A working directory in /proc lets a process start outside the container's root on engines
    /// whose runc leaks a descriptor of the host's (CVE-2024-21626).
    private mutating func workingDir(_ value: JSONValue) {
        guard let directory = value.stringValue, Self.isWithinOrEqual(Self.lexicallyClean(directory), "/proc") else { return }
        refuse("WorkingDir", "\(quoted(value)) lies in /proc; give a directory of the image or /app")
    }

    /// `0`, `root`, with any group: `0:0`, `root:root`, `0:1000`.
    static func isRoot(_ user: String) -> Bool {
        let name = user.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)[0]
        return name == "0" || name == "root"
    }

    private mutating func labels(_ value: JSONValue) {
        guard let labels = value.objectValue else { return }
        for key in labels.keys.sorted() where key.hasPrefix("berth.") {
            warn("Labels", "\(quoted(.string(key))): berth.* labels are Berth's; the template's value is replaced")
        }
    }

    private mutating func env(_ value: JSONValue) {
        guard let entries = value.arrayValue else { return }
        if entries.contains(where: { $0.stringValue.map { $0 == "BERTH_UNIT_SECRET" || $0.hasPrefix("BERTH_UNIT_SECRET=") } ?? false }) {
            warn("Env", "BERTH_UNIT_SECRET is the unit's own secret, set by Berth; the template's value is replaced")
        }
    }

    // MARK: - HostConfig

    private mutating func hostConfig(_ value: JSONValue) {
        if value.isNull { return }
        guard let host = value.objectValue else {
            refuse("HostConfig", "must be an object, not \(quoted(value))")
            return
        }
        refuseKeysDifferingOnlyInCase(host, in: "HostConfig.", known: Self.refusedHostFields + Self.replacedHostFields.keys)
        let replaced = Dictionary(uniqueKeysWithValues: Self.replacedHostFields.map { (JSONValue.foldedKey($0.key), $0) })
        for (key, value) in host.sorted(by: { $0.key < $1.key }) {
            let folded = JSONValue.foldedKey(key)
            if let field = replaced[folded] {
                warn("HostConfig.\(field.key)", "\(field.value); the template's value is replaced")
                continue
            }
            switch folded {
            case "privileged":
                if value != .bool(false) && !value.isNull {
                    refuse("HostConfig.Privileged", "a privileged unit has every device and capability of the host; leave it out or false, not \(quoted(value))")
                }
            case "capadd": capAdd(value)
            case "capabilities":
                refuseUnlessEmpty("HostConfig.Capabilities", value, "replaces the default set of capabilities; leave it out (CapAdd may add NET_BIND_SERVICE)")
            case "devices", "devicecgrouprules", "devicerequests":
                let name = ["devices": "Devices", "devicecgrouprules": "DeviceCgroupRules", "devicerequests": "DeviceRequests"][folded]!
                refuseUnlessEmpty("HostConfig.\(name)", value, "gives the unit devices of the host; leave it out or []")
            case "pidmode":
                mode("HostConfig.PidMode", value, allowed: [], "each unit has its own processes; \"host\" or \"container:…\" would share the host's or another unit's")
            case "ipcmode":
                mode("HostConfig.IpcMode", value, allowed: ["private", "shareable", "none"], "\"host\" or \"container:…\" would share the host's or another unit's IPC")
            case "usernsmode":
                mode("HostConfig.UsernsMode", value, allowed: [], "\"host\" turns off the engine's remapping of users")
            case "utsmode":
                mode("HostConfig.UTSMode", value, allowed: [], "\"host\" would share the host's name and let the unit change it")
            case "cgroupnsmode":
                mode("HostConfig.CgroupnsMode", value, allowed: ["private"], "\"host\" shows the unit the host's cgroups")
            case "cgroup":
                mode("HostConfig.Cgroup", value, allowed: [], "\"container:…\" joins another container's cgroup")
            case "networkmode":
                refuse("HostConfig.NetworkMode", "Berth puts every unit on its user's own network; leave NetworkMode out")
            case "securityopt": securityOpt(value)
            case "pidslimit":
                if case .integer(let limit) = value, TemplatePolicy.pidsLimits.contains(limit) { break }
                refuse("HostConfig.PidsLimit", "must be a whole number from 1 to 4096 (left out, Berth sets 1024), not \(quoted(value))")
            case "binds": binds(value)
            case "mounts": mounts(value)
            case "volumesfrom":
                refuseUnlessEmpty("HostConfig.VolumesFrom", value, "mounts another container's volumes, perhaps another user's unit; leave it out or []")
            case "logconfig":
                refuse("HostConfig.LogConfig", "Berth caps each unit's log itself (json-file max-size and max-file); leave LogConfig out")
            case "maskedpaths", "readonlypaths":
                let name = folded == "maskedpaths" ? "MaskedPaths" : "ReadonlyPaths"
                if !value.isNull {
                    refuse("HostConfig.\(name)", "replaces the engine's list of /proc and /sys paths hidden from containers; leave it out")
                }
            case "groupadd": groupAdd(value)
            default: break
            }
        }
    }

    private mutating func capAdd(_ value: JSONValue) {
        let field = "HostConfig.CapAdd"
        let entries: [JSONValue]
        switch value {
        case .null: return
        case .string: entries = [value]
        case .array(let list): entries = list
        default:
            refuse(field, "must be a list of capabilities, not \(quoted(value))")
            return
        }
        for entry in entries {
            let name = entry.stringValue.map { Self.asciiUppercased($0) }
            if name == "NET_BIND_SERVICE" || name == "CAP_NET_BIND_SERVICE" { continue }
            refuse(field, "only NET_BIND_SERVICE may be added back (every unit drops ALL), not \(quoted(entry))")
        }
    }

    /// A namespace setting: left out, empty, or one of `allowed`, exactly as Docker spells them.
    private mutating func mode(_ field: String, _ value: JSONValue, allowed: [String], _ reason: String) {
        if value.isNull || value == .string("") { return }
        if let text = value.stringValue, allowed.contains(text) { return }
        let choices = allowed.isEmpty ? "left out" : allowed.map { "\"\($0)\"" }.joined(separator: ", ") + " or left out"
        refuse(field, "must be \(choices), not \(quoted(value)): \(reason)")
    }

    private mutating func refuseUnlessEmpty(_ field: String, _ value: JSONValue, _ reason: String) {
        if value.isNull || value == .array([]) { return }
        refuse(field, "\(reason), not \(quoted(value))")
    }

    /// Groups by number only: a name is looked up in the image, where any name may be group 0,
    /// and runc reads `00` and `+0` as 0 too.
    private mutating func groupAdd(_ value: JSONValue) {
        guard !policy.allowsRoot, let groups = value.arrayValue else { return }
        for group in groups {
            guard let text = group.stringValue, let number = Self.groupNumber(text) else {
                refuse("HostConfig.GroupAdd", "\(quoted(group)): give groups by number (a name is looked up in the image and may be root's)")
                continue
            }
            if number == 0 {
                refuse("HostConfig.GroupAdd", "group \(quoted(group)) is root's; only with <AllowRootUnits>true</AllowRootUnits> in docker_server.xml or an engine that remaps users")
            }
        }
    }

    /// A group number as runc reads it (Go's ParseInt: a sign, then decimal digits); one too big
    /// for 64 bits is no group but is not 0 either.
    static func groupNumber(_ text: String) -> Int64? {
        var digits = Substring(text)
        if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        let significant = digits.drop { $0 == "0" }
        return significant.isEmpty ? 0 : Int64(significant) ?? .max
    }

    // MARK: - SecurityOpt

    private mutating func securityOpt(_ value: JSONValue) {
        let field = "HostConfig.SecurityOpt"
        for (entry, option) in stringList(field, value, of: "strings") {
            if let reason = Self.securityOptProblem(option) {
                refuse(field, "\(quoted(entry)) \(reason)")
            }
        }
    }

    /// Why one `SecurityOpt` entry loosens confinement, or nil. Docker splits an entry at its first
    /// `=`, else at its first `:`; it is read here with spaces dropped and case ignored, so that
    /// every spelling an engine might accept is caught.
    static func securityOptProblem(_ option: String) -> String? {
        let normalized = String(String.UnicodeScalarView(asciiLowercased(option).unicodeScalars.filter { !$0.properties.isWhitespace }))
        if normalized == "no-new-privileges" { return nil }
        if normalized == "disable" { return "turns SELinux labels off; leave it out" }
        let separator: Character? = normalized.contains("=") ? "=" : normalized.contains(":") ? ":" : nil
        guard let separator, let split = normalized.firstIndex(of: separator) else { return nil }
        let key = normalized[..<split]
        let value = normalized[normalized.index(after: split)...]
        switch key {
        case "no-new-privileges":
            return ["1", "t", "true"].contains(value) ? nil : "turns no-new-privileges off; Berth sets it on, and a template may only repeat it as true"
        case "seccomp":
            if value == "builtin" { return nil }
            if value == "unconfined" { return "turns seccomp off; leave it out for the engine's default profile" }
            return "is a custom seccomp profile, which Berth cannot check; leave it out for the engine's default profile"
        case "apparmor":
            return value == "unconfined" ? "turns AppArmor off; name a loaded profile or leave it out" : nil
        case "systempaths":
            return value == "unconfined" ? "shows the unit the /proc and /sys paths the engine hides; leave it out" : nil
        case "label":
            if value == "disable" { return "turns SELinux labels off; leave it out" }
            if value.hasPrefix("type:") { return "sets the SELinux type, which can leave the container's confinement; leave it out" }
            return nil
        case "writable-cgroups":
            return ["0", "f", "false"].contains(value) ? nil : "lets the unit change its own cgroup limits; leave it out"
        default:
            return nil
        }
    }

    // MARK: - Binds and mounts

    private mutating func binds(_ value: JSONValue) {
        let field = "HostConfig.Binds"
        for (entry, bind) in stringList(field, value, of: "\"SOURCE:TARGET[:OPTIONS]\" strings") {
            let parts = bind.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            // One part is only a target: an anonymous volume.
            let (source, target) = parts.count == 1 ? (nil, parts[0]) : (parts[0], parts[1])
            if let source, source.hasPrefix("/"), let reason = sourceProblem(source) {
                refuse(field, "\(quoted(entry)): \(reason)")
            } else if Self.isBerthMountTarget(target) {
                warn(field, "\(quoted(entry)): /app and /share are Berth's mounts of the user's home and the share; this bind is dropped")
            }
        }
    }

    private mutating func mounts(_ value: JSONValue) {
        let field = "HostConfig.Mounts"
        if value.isNull { return }
        guard let entries = value.arrayValue else {
            refuse(field, "must be a list of mounts, not \(quoted(value))")
            return
        }
        for entry in entries {
            guard let mount = entry.objectValue else {
                refuse(field, "must be a list of mounts, not \(quoted(entry))")
                continue
            }
            refuseKeysDifferingOnlyInCase(mount, in: "HostConfig.Mounts", known: ["Type", "Source", "Target", "ReadOnly", "VolumeOptions", "BindOptions"], nested: true)
            // A volume's source is a name, never a path: an absolute source is a host path.
            for (_, source) in mount.members(matching: "Source") {
                if let path = source.stringValue, path.hasPrefix("/"), let reason = sourceProblem(path) {
                    refuse(field, "\(quoted(entry)): \(reason)")
                }
            }
            for (_, options) in mount.members(matching: "VolumeOptions") {
                guard let options = options.objectValue else { continue }
                refuseKeysDifferingOnlyInCase(options, in: "HostConfig.Mounts", known: ["NoCopy", "Labels", "DriverConfig", "Subpath"], nested: true)
                if options.members(matching: "DriverConfig").contains(where: { !$0.value.isNull }) {
                    refuse(field, "\(quoted(entry)): a volume driver's options can mount any host path (the local driver's o=bind); use a bind, whose source Berth checks")
                }
            }
            if mount.members(matching: "Target").contains(where: { $0.value.stringValue.map(Self.isBerthMountTarget) ?? false }) {
                warn(field, "\(quoted(entry)): /app and /share are Berth's mounts of the user's home and the share; this mount is dropped")
            }
        }
    }

    /// The named volumes a create body mounts, each with its field: a bind's source that is not a
    /// path, and a volume mount's source.
    static func namedVolumes(in body: [String: JSONValue]) -> Set<NamedVolume> {
        let host = body.value(ofField: "HostConfig")?.objectValue ?? [:]
        let binds = host.value(ofField: "Binds")?.arrayValue?.compactMap(\.stringValue) ?? []
        let fromBinds = binds.compactMap { bind -> NamedVolume? in
            let parts = bind.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count >= 2, !parts[0].isEmpty, !parts[0].hasPrefix("/") else { return nil }
            return NamedVolume(field: "HostConfig.Binds", name: String(parts[0]))
        }
        let mounts = host.value(ofField: "Mounts")?.arrayValue?.compactMap(\.objectValue) ?? []
        let fromMounts = mounts.compactMap { mount -> NamedVolume? in
            guard mount.value(ofField: "Type")?.stringValue.map(asciiLowercased) == "volume",
                let source = mount.value(ofField: "Source")?.stringValue, !source.isEmpty
            else { return nil }
            return NamedVolume(field: "HostConfig.Mounts", name: source)
        }
        return Set(fromBinds + fromMounts)
    }

    struct NamedVolume: Hashable, Comparable {
        var field: String
        var name: String

        static func < (lhs: Self, rhs: Self) -> Bool { (lhs.field, lhs.name) < (rhs.field, rhs.name) }
    }

    /// Why a bind's host path must not be given to a unit, or nil.
    /// The path is judged as written and as the file system resolves it here, since the engine
    /// follows links when it mounts.
    func sourceProblem(_ source: String) -> String? {
        let clean = Self.lexicallyClean(source)
        for path in [clean] + Self.resolved(clean) {
            if let problem = pathProblem(path) { return problem }
        }
        return nil
    }

    private func pathProblem(_ path: String) -> String? {
        let allowed = "bind only host directories outside the users' homes, <HomeRoot> and the engine's files"
        let last = path.split(separator: "/").last ?? ""
        if last.hasSuffix("docker.sock") || last.hasSuffix("containerd.sock")
            || Self.enginePaths.contains(where: { Self.isWithinOrEqual(path, $0) || Self.isWithinOrEqual($0, path) })
        {
            return "reaches the container engine's socket or state, which controls every container and the host; \(allowed)"
        }
        if let kernel = Self.kernelPaths.first(where: { Self.isWithinOrEqual(path, $0) }) {
            return "lies in \(kernel), the kernel's view of the host; \(allowed)"
        }
        for root in policy.homeRoot.map({ [Self.lexicallyClean($0)] + Self.resolved($0) }) ?? [] {
            if Self.isWithinOrEqual(path, root) { return "lies in <HomeRoot> \(root), where users' homes are; \(allowed)" }
            if Self.isWithinOrEqual(root, path) { return "contains <HomeRoot> \(root), where users' homes are; \(allowed)" }
        }
        for home in policy.homes.flatMap({ [Self.lexicallyClean($0)] + Self.resolved($0) }) {
            if Self.isWithinOrEqual(path, home) { return "lies in the user's home \(home); \(allowed)" }
            if Self.isWithinOrEqual(home, path) { return "contains the user's home \(home); \(allowed)" }
        }
        return nil
    }

    /// Where `path` leads on this host once links are followed, when it exists and leads elsewhere.
    static func resolved(_ path: String) -> [String] {
        guard let real = realpath(path, nil) else { return [] }
        defer { free(real) }
        let text = String(cString: real)
        return text == path ? [] : [text]
    }

    static func isBerthMountTarget(_ target: String) -> Bool {
        let path = lexicallyClean(target)
        return isWithinOrEqual(path, "/app") || isWithinOrEqual(path, "/share")
    }

    /// Whether `path` is `directory` or lies below it; both clean and absolute.
    static func isWithinOrEqual(_ path: String, _ directory: String) -> Bool {
        path == directory || directory == "/" || path.hasPrefix(directory + "/")
    }

    /// `path` with `.`, `..`, repeated and trailing slashes resolved as the engine does (Go's
    /// `path.Clean`), without looking at the file system.
    static func lexicallyClean(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part != ".." {
                parts.append(part)
            } else if let last = parts.last, last != ".." {
                parts.removeLast()
            } else if !absolute {
                parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : joined.isEmpty ? "." : joined
    }

    /// The strings of a list field, each with its JSON; null is no list, and anything but a list
    /// of strings is refused, naming `shape`.
    private mutating func stringList(_ field: String, _ value: JSONValue, of shape: String) -> [(entry: JSONValue, text: String)] {
        if value.isNull { return [] }
        guard let entries = value.arrayValue else {
            refuse(field, "must be a list of \(shape), not \(quoted(value))")
            return []
        }
        var texts: [(entry: JSONValue, text: String)] = []
        for entry in entries {
            guard let text = entry.stringValue else {
                refuse(field, "must be a list of \(shape), not \(quoted(entry))")
                continue
            }
            texts.append((entry, text))
        }
        return texts
    }

    // MARK: - Findings

    /// Keys Docker reads as one field make what it reads depend on their order: refused.
    private mutating func refuseKeysDifferingOnlyInCase(_ object: [String: JSONValue], in path: String, known: [String], nested: Bool = false) {
        for keys in object.keysDifferingOnlyInCase {
            let folded = JSONValue.foldedKey(keys[0])
            let name = known.first { JSONValue.foldedKey($0) == folded } ?? keys[0]
            let spelled = keys.map { quoted(.string($0)) }.joined(separator: ", ")
            refuse(nested ? path : path + name, "keys \(spelled) differ only in case and Docker reads them as one field; keep one")
        }
    }

    private mutating func refuse(_ field: String, _ message: String) {
        problems.append(TemplateProblem(field: field, message: message, isWarning: false))
    }

    private mutating func warn(_ field: String, _ message: String) {
        problems.append(TemplateProblem(field: field, message: message, isWarning: true))
    }

    /// A value as JSON, cut short so a message stays one readable line.
    private func quoted(_ value: JSONValue) -> String {
        let text = value.description
        return text.count > 80 ? String(text.prefix(79)) + "…" : text
    }

    static func asciiUppercased(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { ("a"..."z").contains($0) ? Unicode.Scalar(UInt8($0.value - 0x20)) : $0 }))
    }

    static func asciiLowercased(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { ("A"..."Z").contains($0) ? Unicode.Scalar(UInt8($0.value + 0x20)) : $0 }))
    }
}
