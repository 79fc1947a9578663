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
            user: "aaa", session: "sess-1", unit: HostPort(host: "192.168.0.76", port: 8281), memory: memory, cpu: 512,
            home: "/opt/app/aaa", unitSecret: unitSecret)
        return UnitSpec(
            request: request, memory: try MemorySpec(parsing: memory), share: "/home/docker/share", defaultImage: "berth-unit:latest",
            hostLabel: "192.168.0.76:9001", network: "berth-aaa-192.168.0.76", owner: (uid: 1000, gid: 1000))
    }

    @Test func createBodyHasEverythingSpecFourTwoRequires() throws {
        let body = try spec().createBody(template: .builtIn)
        let host = try #require(body.hostConfig)
        #expect(host.memory == 500 << 20)
        #expect(host.cpuShares == 512)
        #expect(host.`init` == true)
        #expect(host.binds == ["/home/docker/share:/share:ro", "/opt/app/aaa:/app"])
        #expect(host.portBindings == ["8281/tcp": [PortBinding(hostIp: "192.168.0.76", hostPort: "8281")]])
        #expect(host.networkMode == "berth-aaa-192.168.0.76")
        #expect(host.securityOpt == ["no-new-privileges"])
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
        #expect(try spec().createBody(template: shipped) == (try spec().createBody(template: .builtIn)))
    }

    @Test func esprocTemplateRendersTheSeedsStartCommand() throws {
        let template = try UnitTemplate.load(path: Self.templates + "/esproc.json")
        let body = try spec(memory: "1g,256m").createBody(template: template)
        #expect(body.image == "esproc:latest")
        let command = try #require(body.cmd?.first)
        #expect(command.contains("cp /app/config/raqsoftConfig.xml ../config/"))
        #expect(command.contains("cp /app/config/unitServer.xml ../config/"))
        #expect(command.contains("-Xms1g -Xmx1g -XX:NewSize=256m"))
        #expect(command.contains("exec ./ServerConsole.sh -p192.168.0.76:8281"))
        #expect(body.hostConfig?.memory == 1 << 30)
        #expect(body.user == "0:0")
    }

    @Test func aTemplateCannotLoosenWhatBerthSets() throws {
        let hostile = UnitTemplate(source: "hostile.json", text: """
            {"Image": "x", "User": "0:0", "Labels": {"berth.user": "bbb", "team": "red"},
             "Env": ["BERTH_UNIT_SECRET=guessable"],
             "HostConfig": {"Memory": 0, "CpuShares": 99999, "Init": false, "NetworkMode": "host",
                            "Binds": ["/:/app", "/etc:/share/etc", "/data/jdbc:/jdbc:ro"],
                            "PortBindings": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "22"}]},
                            "SecurityOpt": ["seccomp=unconfined"], "PidsLimit": 64}}
            """)
        let body = try spec().createBody(template: hostile)
        let host = try #require(body.hostConfig)
        #expect(host.memory == 500 << 20)
        #expect(host.cpuShares == 512)
        #expect(host.`init` == true)
        #expect(host.networkMode == "berth-aaa-192.168.0.76")
        #expect(host.binds == ["/home/docker/share:/share:ro", "/opt/app/aaa:/app", "/data/jdbc:/jdbc:ro"])
        #expect(host.portBindings?.keys.sorted() == ["8281/tcp"])
        #expect(host.securityOpt == ["seccomp=unconfined", "no-new-privileges"])
        #expect(host.pidsLimit == 64)
        #expect(body.labels?[UnitLabel.user] == "aaa")
        #expect(body.labels?["team"] == "red")
        #expect(body.env?.filter { $0.hasPrefix("BERTH_UNIT_SECRET=") } == ["BERTH_UNIT_SECRET=s3cret"])
        #expect(body.user == "0:0")
    }

    @Test func unknownPlaceholdersAndBrokenTemplatesAreClearErrors() {
        #expect {
            _ = try spec().createBody(template: UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{hostname}}"]}"#))
        } throws: { error in
            "\(error)".hasPrefix("t.json: unknown placeholder {{hostname}}; known: {{user}}")
        }
        #expect {
            _ = try spec().createBody(template: UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{user"]}"#))
        } throws: { error in
            "\(error)".hasPrefix("t.json: unknown placeholder {{user\"]}")
        }
        do {
            _ = try spec().createBody(template: UnitTemplate(source: "t.json", text: #"{"Cmd": "#))
            Issue.record("a broken template rendered")
        } catch {
            #expect("\(error)".hasPrefix("t.json: not a Docker create body"))
        }
    }

    @Test func placeholdersAreReplacedOnceAndValuesAreNotReadAsPlaceholders() throws {
        let template = UnitTemplate(source: "t.json", text: #"{"Cmd": ["{{user}}-{{port}}", "{x}", "{{cpu}}{{cpu}}"]}"#)
        let body = try template.render(["user": "{{port}}", "port": "7001", "cpu": "2"])
        #expect(body.cmd == ["{{port}}-7001", "{x}", "22"])
    }

    @Test(arguments: [("aaa", true), ("A1_b.c-d", true), (String(repeating: "x", count: 32), true), ("", false), ("_a", false),
                      (".a", false), (String(repeating: "x", count: 33), false), ("a b", false), ("a/b", false), ("é", false), ("a\n", false)])
    func userNamesAreSafeContainerNameParts(name: String, allowed: Bool) {
        #expect(UnitService.isAllowedUserName(name) == allowed)
    }
}
