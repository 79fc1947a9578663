import BerthConfig
import BerthAPI
import BerthCore
import EngineAPI
import Foundation
import Testing

@testable import Agent

@Suite struct UnitSpecTests {
    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Resources/templates").path

    func spec(memory: String = "500m", unitSecret: String = "s3cret") throws -> UnitSpec {
        let request = StartUnitRequest(
            user: "aaa", session: "sess-1", unit: HostPort(host: "192.168.0.76", port: 8281), memory: try MemorySpec(parsing: memory), cpu: 512,
            home: "/opt/app/aaa", unitSecret: unitSecret)
        return UnitSpec(
            request: request, memory: try MemorySpec(parsing: memory), share: "/home/docker/share", defaultImage: "berth-unit:latest",
            hostLabel: "192.168.0.76:9001", network: "berth-aaa-192.168.0.76", account: UnixAccount(uid: 1000, gid: 1000))
    }

    /// The create body as Docker reads it, in Berth's model of it.
    func body(_ template: UnitTemplate = .builtIn, memory: String = "500m", policy: TemplatePolicy = TemplatePolicy()) throws -> ContainerConfig {
        let raw = try spec(memory: memory).createBody(template: template, policy: policy)
        return try EngineJSON.decoder.decode(ContainerConfig.self, from: EngineJSON.encoder.encode(raw))
    }

    @Test func createBodyHasLimitsMountsPortNetworkLabelsAndConfinement() throws {
        let body = try body()
        let host = try #require(body.hostConfig)
        #expect(host.memory == 500 << 20)
        #expect(host.cpuShares == 512)
        #expect(host.`init` == true)
        #expect(host.binds == ["/home/docker/share:/share:ro", "/opt/app/aaa:/app"])
        #expect(host.portBindings == ["8281/tcp": [PortBinding(hostIp: "192.168.0.76", hostPort: "8281")]])
        #expect(host.networkMode == "berth-aaa-192.168.0.76")
        #expect(host.securityOpt == ["no-new-privileges"])
        #expect(host.capDrop == ["ALL"])
        #expect(host.pidsLimit == UnitSpec.defaultPidsLimit)
        #expect(body.exposedPorts == ["8281/tcp": EmptyObject()])
        #expect(body.labels == [
            UnitLabel.user: "aaa", UnitLabel.unit: "192.168.0.76:8281", UnitLabel.session: "sess-1", UnitLabel.host: "192.168.0.76:9001",
        ])
        #expect(body.user == "1000:1000")
        #expect(body.image == "berth-unit:latest")
        #expect(body.cmd == ["/bin/berth-unit", "serve", "--port", "8281"])
        #expect(body.env?.contains("BERTH_UNIT_SECRET=s3cret") == true)
        #expect(body.env?.contains("BERTH_CPU_SHARES=512") == true)
    }

    @Test func builtInTemplateIsTheShippedUnitJSON() throws {
        let shipped = try UnitTemplate.load(path: Self.templates + "/unit.json")
        #expect(try body(shipped) == (try body()))
    }

    @Test func esprocTemplateRendersServerConsoleStartCommandAsTheUser() throws {
        let template = try UnitTemplate.load(path: Self.templates + "/esproc.json")
        #expect(template.problems(TemplatePolicy()).filter { !$0.isWarning }.isEmpty)
        let body = try body(template, memory: "1g,256m")
        #expect(body.image == "esproc:latest")
        let command = try #require(body.cmd?.first)
        #expect(command.contains("cp /app/config/$f ../config/"))
        #expect(command.contains("raqsoftConfig.xml unitServer.xml"))
        #expect(command.contains("-Xms1g -Xmx1g -XX:NewSize=256m"))
        #expect(command.contains("exec ./ServerConsole.sh -p192.168.0.76:8281"))
        #expect(body.hostConfig?.memory == 1 << 30)
        #expect(body.user == "1000:1000")
    }

    /// What Berth sets wins over the template, whatever the key's spelling; the template's own
    /// fields stay.
    @Test func berthsSettingsReplaceTheTemplatesUnderEverySpelling() throws {
        let template = UnitTemplate(source: "t.json", text: """
            {"Image": "x", "Labels": {"berth.user": "bbb", "team": "red"}, "Env": ["BERTH_UNIT_SECRET=guessable", "A=1"],
             "hostconfig": {"memory": 0, "CPUSHARES": 99999, "Init": false,
                            "Binds": ["/etc:/share/etc", "/data/jdbc:/jdbc:ro", "/srv/x:/app/x", "/srv/t://app/tools:ro", "/app/anon", "/./share"],
                            "Mounts": [{"Type": "volume", "Source": "v-{{user}}", "Target": "/app/v"}, {"Type": "tmpfs", "Target": "/scratch"},
                                       {"Type": "tmpfs", "Target": "//app/t"}],
                            "PortBindings": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "22"}]}, "PublishAllPorts": true,
                            "SecurityOpt": ["label=level:s0"], "PidsLimit": 64, "ShmSize": 1048576}}
            """)
        let raw = try spec().createBody(template: template, policy: TemplatePolicy())
        #expect(raw.members(matching: "HostConfig").map(\.key) == ["HostConfig"])
        let host = try #require(raw["HostConfig"]?.objectValue)
        #expect(host.members(matching: "Memory").map(\.key) == ["Memory"])
        #expect(host["ShmSize"] == .integer(1_048_576))
        let body = try body(template)
        let config = try #require(body.hostConfig)
        #expect(config.memory == 500 << 20)
        #expect(config.cpuShares == 512)
        #expect(config.`init` == true)
        #expect(config.networkMode == "berth-aaa-192.168.0.76")
        #expect(config.binds == ["/home/docker/share:/share:ro", "/opt/app/aaa:/app", "/data/jdbc:/jdbc:ro"])
        #expect(host["Mounts"] == [["Type": "tmpfs", "Target": "/scratch"]])
        #expect(config.portBindings?.keys.sorted() == ["8281/tcp"])
        #expect(host["PublishAllPorts"] == false)
        #expect(config.securityOpt == ["label=level:s0", "no-new-privileges"])
        #expect(config.capDrop == ["ALL"])
        #expect(config.pidsLimit == 64)
        #expect(body.labels?[UnitLabel.user] == "aaa")
        #expect(body.labels?["team"] == "red")
        #expect(body.env == ["A=1", "BERTH_UNIT_SECRET=s3cret"])
    }

    /// A placeholder's value is known only at a start: a bind that lands in the user's own home
    /// once rendered is refused then.
    @Test func eachStartChecksItsOwnRender() throws {
        let template = UnitTemplate(source: "t.json", text: #"{"HostConfig": {"Binds": ["/opt/app/{{user}}/data:/data"]}}"#)
        #expect(template.problems(TemplatePolicy()).isEmpty)
        #expect {
            _ = try spec().createBody(template: template, policy: TemplatePolicy())
        } throws: { error in
            "\(error)".hasPrefix("unit 192.168.0.76:8281: template t.json refused: HostConfig.Binds")
        }
    }

    @Test func aRootTemplateRunsAsRootOnlyWhereAllowed() throws {
        let template = UnitTemplate(source: "t.json", text: #"{"User": "0:0"}"#)
        #expect(throws: AgentError.self) { _ = try spec().createBody(template: template, policy: TemplatePolicy()) }
        #expect(try body(template, policy: TemplatePolicy(allowRootUnits: true)).user == "0:0")
        #expect(try body(template, policy: TemplatePolicy(engineRemapsUsers: true)).user == "0:0")
    }

    @Test(arguments: [("aaa", true), ("A1_b.c-d", true), (String(repeating: "x", count: 32), true), ("", false), ("_a", false),
                      (".a", false), (String(repeating: "x", count: 33), false), ("a b", false), ("a/b", false), ("é", false), ("a\n", false)])
    func userNamesAreSafeContainerNameParts(name: String, allowed: Bool) {
        #expect(UnitRules.isValidUserName(name) == allowed)
    }
}
