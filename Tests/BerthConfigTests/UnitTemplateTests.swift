import Foundation
import Testing
@testable import BerthConfig
import BerthAPI
@testable import BerthCore

@Suite struct UnitTemplateTests {
    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Resources/templates").path

    static let policy = TemplatePolicy(homeRoot: "/home/berth", homes: ["/home/berth/aaa", "/opt/app/bbb"])

    func problems(_ text: String, _ policy: TemplatePolicy = Self.policy) -> [TemplateProblem] {
        UnitTemplate(source: "t.json", text: text).problems(policy)
    }

    func errorFields(_ text: String, _ policy: TemplatePolicy = Self.policy) -> [String] {
        problems(text, policy).filter { !$0.isWarning }.map(\.field)
    }

    // MARK: - Refused

    /// Each setting that loosens a unit's confinement, with the field its one error must name.
    @Test(arguments: [
        ("HostConfig.Privileged", #"{"HostConfig": {"Privileged": true}}"#),
        ("HostConfig.CapAdd", #"{"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}"#),
        ("HostConfig.CapAdd", #"{"HostConfig": {"CapAdd": "CAP_SYS_ADMIN"}}"#),
        ("HostConfig.CapAdd", #"{"HostConfig": {"CapAdd": ["NET_BIND_SERVICE", "ALL"]}}"#),
        ("HostConfig.Capabilities", #"{"HostConfig": {"Capabilities": ["CAP_SYS_ADMIN"]}}"#),
        ("HostConfig.Devices", #"{"HostConfig": {"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]}}"#),
        ("HostConfig.DeviceCgroupRules", #"{"HostConfig": {"DeviceCgroupRules": ["c 1:3 mr"]}}"#),
        ("HostConfig.DeviceRequests", #"{"HostConfig": {"DeviceRequests": [{"Driver": "nvidia", "Count": -1}]}}"#),
        ("HostConfig.PidMode", #"{"HostConfig": {"PidMode": "host"}}"#),
        ("HostConfig.PidMode", #"{"HostConfig": {"PidMode": "container:berth-bbb-192.168.0.76-8281"}}"#),
        ("HostConfig.IpcMode", #"{"HostConfig": {"IpcMode": "host"}}"#),
        ("HostConfig.IpcMode", #"{"HostConfig": {"IpcMode": "container:berth-bbb-192.168.0.76-8281"}}"#),
        ("HostConfig.UsernsMode", #"{"HostConfig": {"UsernsMode": "host"}}"#),
        ("HostConfig.UTSMode", #"{"HostConfig": {"UTSMode": "host"}}"#),
        ("HostConfig.CgroupnsMode", #"{"HostConfig": {"CgroupnsMode": "host"}}"#),
        ("HostConfig.Cgroup", #"{"HostConfig": {"Cgroup": "container:berth-bbb-192.168.0.76-8281"}}"#),
        ("HostConfig.NetworkMode", #"{"HostConfig": {"NetworkMode": "bridge"}}"#),
        ("HostConfig.NetworkMode", #"{"HostConfig": {"NetworkMode": "host"}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["no-new-privileges:false"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["no-new-privileges=false"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["no-new-privileges=0"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["No-New-Privileges = FALSE"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["seccomp:unconfined"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["seccomp={\"defaultAction\": \"SCMP_ACT_ALLOW\"}"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["apparmor=unconfined"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["apparmor:unconfined"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["systempaths=unconfined"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["label=disable"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["label:disable"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["disable"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["label=type:spc_t"]}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"SecurityOpt": ["writable-cgroups=true"]}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": 0}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": -1}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": 4097}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": null}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": "64"}}"#),
        ("HostConfig.PidsLimit", #"{"HostConfig": {"PidsLimit": {{cpu}}}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/run/docker.sock:/engine.sock:ro"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/srv/rootless/docker.sock:/engine.sock"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/var/run:/host-run"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/run/:/host-run"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/:/host:ro"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/var/lib/docker/volumes:/volumes"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/home/berth:/homes"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/home/berth/ccc/data:/data"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/home:/homes"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/opt/app/bbb:/data"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/opt/app/bbb/data:/data"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/opt/app:/data"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/srv/../opt//app/./bbb/:/data"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": "/srv/data:/data"}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/d.sock"}]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"type": "bind", "source": "/opt/app/bbb", "target": "/data"}]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "volume", "Source": "", "Target": "/homes", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/home"}}}}]}}"#),
        ("HostConfig.VolumesFrom", #"{"HostConfig": {"VolumesFrom": ["berth-bbb-192.168.0.76-8281"]}}"#),
        ("User", #"{"User": "1000:1000"}"#),
        ("User", #"{"User": ""}"#),
        ("User", #"{"User": null}"#),
        ("User", #"{"User": "0:0"}"#),
        ("User", #"{"User": "root"}"#),
        ("HostConfig.LogConfig", #"{"HostConfig": {"LogConfig": {"Type": "none"}}}"#),
        ("HostConfig.MaskedPaths", #"{"HostConfig": {"MaskedPaths": []}}"#),
        ("HostConfig.ReadonlyPaths", #"{"HostConfig": {"ReadonlyPaths": []}}"#),
        ("HostConfig.GroupAdd", #"{"HostConfig": {"GroupAdd": ["0"]}}"#),
        ("HostConfig.GroupAdd", #"{"HostConfig": {"GroupAdd": ["root"]}}"#),
        ("HostConfig.GroupAdd", #"{"HostConfig": {"GroupAdd": ["00"]}}"#),
        ("HostConfig.GroupAdd", #"{"HostConfig": {"GroupAdd": ["+0"]}}"#),
        ("HostConfig.GroupAdd", #"{"HostConfig": {"GroupAdd": ["wheel"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/proc/self/root/run:/hostrun"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/proc/thread-self/root/home/bob:/bob"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/sys/fs/cgroup:/cg"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/dev/sda:/disk"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["cache:/cache"]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "bind", "Source": "/proc/1/root", "Target": "/host"}]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "volume", "Source": "shared", "Target": "/shared"}]}}"#),
        ("WorkingDir", #"{"WorkingDir": "/proc/self/fd/8"}"#),
        ("HostConfig", #"{"HostConfig": ["Privileged"]}"#),
        ("Privileged", #"{"Privileged": true}"#),
        ("Binds", #"{"Binds": ["/:/host"]}"#),
    ])
    func aLooseningIsRefusedNamingItsField(field: String, template: String) {
        #expect(errorFields(template) == [field], "\(template)")
    }

    /// A volume of each user's own, and groups by number, are fine.
    @Test func perUserVolumesAndNumericGroupsPass() {
        #expect(errorFields(#"{"HostConfig": {"Binds": ["cache-{{user}}:/cache"], "GroupAdd": ["2001", "+100"]}}"#) == [])
        #expect(errorFields(#"{"HostConfig": {"Mounts": [{"Type": "volume", "Source": "scratch-{{user}}", "Target": "/scratch"}]}}"#) == [])
    }

    /// The engine follows links when it mounts, so a source is judged where it leads too.
    @Test func aBindSourceThatLinksIntoTheHomesIsRefused() throws {
        let folder = NSTemporaryDirectory() + "berth-template-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder + "/homes/aaa", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createSymbolicLink(atPath: folder + "/innocent", withDestinationPath: folder + "/homes")
        try FileManager.default.createSymbolicLink(atPath: folder + "/root-link", withDestinationPath: folder + "/homes")
        let policy = TemplatePolicy(homeRoot: folder + "/homes")
        #expect(errorFields(#"{"HostConfig": {"Binds": ["\#(folder)/innocent/aaa:/data"]}}"#, policy) == ["HostConfig.Binds"])
        // A home root given through a link guards what it leads to.
        let linked = TemplatePolicy(homeRoot: folder + "/root-link")
        #expect(errorFields(#"{"HostConfig": {"Binds": ["\#(folder)/homes/aaa:/data"]}}"#, linked) == ["HostConfig.Binds"])
    }

    /// Docker matches keys to fields without regard to case, Unicode folds included.
    @Test(arguments: [
        ("HostConfig.Privileged", #"{"hostconfig": {"privileged": true}}"#),
        ("HostConfig.Privileged", #"{"HOSTCONFIG": {"PRIVILEGED": true}}"#),
        ("HostConfig.Privileged", #"{"HostConfig": {"Prıvileged": true}}"#),
        ("HostConfig.SecurityOpt", #"{"HostConfig": {"ſecurityOpt": ["seccomp=unconfined"]}}"#),
        ("HostConfig.NetworkMode", #"{"HostConfig": {"NetworKMode": "host"}}"#),
        ("HostConfig.CapAdd", #"{"hostConfig": {"capadd": ["sys_admin"]}}"#),
        ("HostConfig.Binds", #"{"hostconfig": {"binds": ["/var/run/docker.sock:/d.sock"]}}"#),
        ("User", #"{"user": "1000"}"#),
    ])
    func fieldsAreFoundWhateverTheirCase(field: String, template: String) {
        #expect(errorFields(template) == [field], "\(template)")
    }

    @Test(arguments: [
        ("HostConfig.Privileged", #"{"HostConfig": {"Privileged": false, "privileged": false}}"#),
        ("HostConfig.Memory", #"{"HostConfig": {"Memory": 1, "memory": 2}}"#),
        ("HostConfig", #"{"HostConfig": {}, "hostConfig": {}}"#),
        ("Image", #"{"Image": "a", "image": "b"}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "tmpfs", "type": "bind", "Target": "/tmp"}]}}"#),
    ])
    func keysDifferingOnlyInCaseAreRefusedAsAmbiguous(field: String, template: String) throws {
        let errors = problems(template).filter { !$0.isWarning }
        #expect(errors.map(\.field) == [field], "\(template)")
        #expect(errors.first?.message.contains("differ only in case") == true)
    }

    @Test func problemsSayWhatIsAllowed() throws {
        let problem = try #require(problems(#"{"HostConfig": {"CapAdd": ["SYS_ADMIN"]}}"#).first)
        #expect("\(problem)" == #"HostConfig.CapAdd: only NET_BIND_SERVICE may be added back (every unit drops ALL), not "SYS_ADMIN""#)
    }

    // MARK: - Allowed

    @Test(arguments: [
        #"{"HostConfig": {"Privileged": false, "CapAdd": ["NET_BIND_SERVICE", "cap_net_bind_service"]}}"#,
        #"{"HostConfig": {"CapAdd": "NET_BIND_SERVICE", "Devices": [], "VolumesFrom": null, "PidMode": ""}}"#,
        #"{"HostConfig": {"IpcMode": "shareable", "CgroupnsMode": "private", "PidsLimit": 4096}}"#,
        #"{"HostConfig": {"SecurityOpt": ["no-new-privileges", "no-new-privileges:true", "no-new-privileges=1", "apparmor=berth-unit", "seccomp=builtin", "label=level:s0:c100"]}}"#,
        #"{"HostConfig": {"Binds": ["/data/jdbc:/jdbc:ro", "cache-{{user}}:/cache", "/tmp", "/home/berthold:/x", "/opt/app/bbbb:/y"]}}"#,
        #"{"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/tmp"}, {"Type": "volume", "Source": "cache-{{user}}", "Target": "/cache", "VolumeOptions": {"NoCopy": true}}]}}"#,
        #"{"HostConfig": {"GroupAdd": ["1001"], "Runtime": "runc", "Sysctls": {"net.ipv4.ip_unprivileged_port_start": "0"}}}"#,
        #"{"Labels": {"team": "red", "Berth.note": "not Berth's"}, "Env": ["BERTH_UNIT=x"]}"#,
    ])
    func safeSettingsPass(template: String) {
        #expect(problems(template) == [])
    }

    @Test func rootIsAllowedOnlyWhenThePolicySaysSo() {
        let root = #"{"User": "0:0", "HostConfig": {"GroupAdd": ["root"]}}"#
        #expect(errorFields(root) == ["HostConfig.GroupAdd", "User"])
        for policy in [TemplatePolicy(allowRootUnits: true), TemplatePolicy(engineRemapsUsers: true)] {
            for user in ["0", "0:0", "root", "root:root", "0:1000"] {
                #expect(errorFields(#"{"User": "\#(user)", "HostConfig": {"GroupAdd": ["0"]}}"#, policy) == [], "\(user)")
            }
            #expect(errorFields(#"{"User": "1000"}"#, policy) == ["User"])
        }
    }

    // MARK: - Replaced with a warning

    @Test(arguments: [
        ("HostConfig.Memory", #"{"HostConfig": {"Memory": 0}}"#),
        ("HostConfig.CpuShares", #"{"HostConfig": {"CpuShares": 99999}}"#),
        ("HostConfig.Init", #"{"HostConfig": {"Init": false}}"#),
        ("HostConfig.PortBindings", #"{"HostConfig": {"PortBindings": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "22"}]}}}"#),
        ("HostConfig.PublishAllPorts", #"{"HostConfig": {"PublishAllPorts": true}}"#),
        ("HostConfig.RestartPolicy", #"{"HostConfig": {"RestartPolicy": {"Name": "always"}}}"#),
        ("HostConfig.AutoRemove", #"{"HostConfig": {"AutoRemove": true}}"#),
        ("HostConfig.CapDrop", #"{"HostConfig": {"CapDrop": ["NET_RAW"]}}"#),
        ("ExposedPorts", #"{"ExposedPorts": {"22/tcp": {}}}"#),
        ("Tty", #"{"Tty": true}"#),
        ("NetworkingConfig", #"{"NetworkingConfig": {"EndpointsConfig": {"bridge": {}}}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/srv/www:/app"]}}"#),
        ("HostConfig.Binds", #"{"HostConfig": {"Binds": ["/etc:/share/etc:ro"]}}"#),
        ("HostConfig.Mounts", #"{"HostConfig": {"Mounts": [{"Type": "tmpfs", "Target": "/app/tmp"}]}}"#),
        ("Labels", #"{"Labels": {"berth.user": "bbb"}}"#),
        ("Env", #"{"Env": ["BERTH_UNIT_SECRET=guessable"]}"#),
    ])
    func berthsOwnSettingsAreReplacedWithAWarning(field: String, template: String) {
        let found = problems(template)
        #expect(found.map(\.field) == [field], "\(template)")
        #expect(found.allSatisfy { $0.isWarning })
    }

    // MARK: - Shipped templates

    @Test func shippedUnitTemplateIsCleanAndTheBuiltIn() throws {
        let shipped = try UnitTemplate.load(path: Self.templates + "/unit.json")
        #expect(shipped.problems(Self.policy) == [])
        #expect(UnitTemplate.builtIn.problems(Self.policy) == [])
        let values = UnitTemplate.sampleValues[0]
        #expect(try shipped.render(values) == (try UnitTemplate.builtIn.render(values)))
    }

    @Test func shippedEsprocTemplateRunsAsTheUser() throws {
        let template = try UnitTemplate.load(path: Self.templates + "/esproc.json")
        #expect(template.problems(Self.policy) == [])
        let asRoot = UnitTemplate(source: "esproc-root.json", text: template.text.replacingOccurrences(of: #""Image""#, with: #""User": "0:0", "Image""#))
        #expect(asRoot.problems(Self.policy).map(\.field) == ["User"])
        var allowing = Self.policy
        allowing.allowRootUnits = true
        #expect(asRoot.problems(allowing) == [])
    }

    // MARK: - Rendering

    @Test func fieldsBerthHasNoModelForReachDockerUnchanged() throws {
        let template = UnitTemplate(source: "t.json", text: """
            {"Image": "esproc:latest", "StopSignal": "SIGINT", "StopTimeout": 30,
             "Healthcheck": {"Test": ["CMD", "curl", "-f", "http://localhost:{{port}}/"], "Interval": 30000000000, "Retries": 3},
             "HostConfig": {"ShmSize": 268435456, "NanoCpus": 1500000000, "Ulimits": [{"Name": "nofile", "Soft": 65536, "Hard": 65536}]},
             "FutureField": {"nested": [1, 2.5, "x", null, true, {"deeper": {}}]}}
            """)
        let body = try template.render(["port": "8281"])
        let expected: [String: JSONValue] = [
            "Image": "esproc:latest", "StopSignal": "SIGINT", "StopTimeout": 30,
            "Healthcheck": ["Test": ["CMD", "curl", "-f", "http://localhost:8281/"], "Interval": 30_000_000_000, "Retries": 3],
            "HostConfig": ["ShmSize": 268_435_456, "NanoCpus": 1_500_000_000, "Ulimits": [["Name": "nofile", "Soft": 65536, "Hard": 65536]]],
            "FutureField": ["nested": [1, 2.5, "x", .null, true, ["deeper": [:]]]],
        ]
        #expect(body == expected)
        #expect(template.problems(Self.policy) == [])
    }

    @Test func bigIntegersRoundTripExactly() throws {
        let text = #"{"Max":9223372036854775807,"Memory":68719476736,"Min":-9223372036854775808,"NanoCpus":1500000000,"Ratio":0.5}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(value == ["Max": .integer(.max), "Memory": .integer(64 << 30), "Min": .integer(.min), "NanoCpus": .integer(1_500_000_000), "Ratio": .number(0.5)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(value), as: UTF8.self) == text)
        #expect(value.description == text)
    }

    @Test func unknownPlaceholdersAndBrokenTemplatesAreClearErrors() {
        #expect {
            _ = try UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{hostname}}"]}"#).render([:])
        } throws: { error in
            "\(error)".hasPrefix("t.json: unknown placeholder {{hostname}}; known: {{user}}")
        }
        #expect {
            _ = try UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{user"]}"#).render([:])
        } throws: { error in
            "\(error)".hasPrefix("t.json: unknown placeholder {{user\"]}")
        }
        #expect {
            _ = try UnitTemplate(source: "t.json", text: #"{"Cmd": "#).render([:])
        } throws: { error in
            "\(error)".hasPrefix("t.json: not a Docker create body")
        }
        #expect {
            _ = try UnitTemplate(source: "t.json", text: #"["Cmd"]"#).render([:])
        } throws: { error in
            "\(error)".hasPrefix("t.json: not a Docker create body: a JSON object")
        }
        #expect(problems(#"{"Cmd": ["{{hostname}}"]}"#).map(\.description) == [
            "unknown placeholder {{hostname}}; known: {{user}} {{ip}} {{port}} {{memory}} {{newsize}} {{cpu}}",
        ])
        #expect(throws: ConfigError.self) { try UnitTemplate.load(path: Self.templates + "/missing.json") }
    }

    @Test func placeholdersAreReplacedOnceAndValuesAreNotReadAsPlaceholders() throws {
        let template = UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{user}}-{{port}}", "{x}", "{{cpu}}{{cpu}}"]}"#)
        #expect(try template.render(["user": "{{port}}", "port": "7001", "cpu": "2"]) == ["Cmd": ["{{port}}-7001", "{x}", "22"]])
    }

    @Test func fieldHelpersFindAndReplaceEverySpelling() {
        var host: [String: JSONValue] = ["pidslimit": 1, "PIDSLIMIT": 2, "Memory": 3]
        #expect(host.value(ofField: "PidsLimit") == nil)
        #expect(host.value(ofField: "memory") == 3)
        host.setField("PidsLimit", to: 1024)
        #expect(host == ["PidsLimit": 1024, "Memory": 3])
        #expect(host.keysDifferingOnlyInCase == [])
    }
}
