import Foundation
import Testing

@testable import EngineAPI
@testable import HTTPClient

@Suite struct RequestBuildingTests {
    @Test func queryIsPercentEncoded() {
        let request = HTTPRequest(
            method: "GET", path: "/v1.41/containers/json",
            query: [(name: "all", value: "1"), (name: "filters", value: #"{"label":["berth.user=aaa"]}"#)])
        #expect(request.target == "/v1.41/containers/json?all=1&filters=%7B%22label%22%3A%5B%22berth.user%3Daaa%22%5D%7D")
    }

    @Test func everyByteButTheUnreservedIsEscaped() {
        #expect(percentEncode("Az09-._~") == "Az09-._~")
        #expect(percentEncode("a b/ü?&=+%#") == "a%20b%2F%C3%BC%3F%26%3D%2B%25%23")
        #expect(percentEncode("演示") == "%E6%BC%94%E7%A4%BA")
        #expect(percentEncode("") == "")
    }

    @Test func createBodyUsesEngineKeysAndKeepsLabelsAndPortSpecs() throws {
        let config = ContainerConfig(
            image: "berth-unit:latest", cmd: ["berth-unit"], labels: ["berth.user": "aaa"],
            exposedPorts: ["8281/tcp": EmptyObject()],
            hostConfig: HostConfig(
                memory: 500 << 20, cpuShares: 512, binds: ["/share:/share:ro"],
                portBindings: ["8281/tcp": [PortBinding(hostIp: "127.0.0.2", hostPort: "8281")]], init: true))
        let json = try JSONSerialization.jsonObject(with: EngineJSON.encoder.encode(config)) as! [String: Any]
        #expect(json["Image"] as? String == "berth-unit:latest")
        #expect(json["Labels"] as? [String: String] == ["berth.user": "aaa"])
        #expect((json["ExposedPorts"] as? [String: Any])?.keys.first == "8281/tcp")
        let host = try #require(json["HostConfig"] as? [String: Any])
        #expect(host["Memory"] as? Int == 500 << 20)
        #expect(host["CpuShares"] as? Int == 512)
        #expect(host["Init"] as? Bool == true)
        #expect(host["Binds"] as? [String] == ["/share:/share:ro"])
        let bindings = try #require(host["PortBindings"] as? [String: [[String: String]]])
        #expect(bindings["8281/tcp"] == [["HostIp": "127.0.0.2", "HostPort": "8281"]])
    }

    @Test func inspectDecodesAcronymKeys() throws {
        let json = #"""
        {"Id":"abc","Name":"/u","State":{"Status":"exited","Running":false,"OOMKilled":true,"ExitCode":137},
         "Config":{"Image":"x","Tty":false,"Labels":{"berth.unit":"127.0.0.2:8281"}},
         "HostConfig":{"Memory":4194304,"CpuShares":2,"Init":true,"PortBindings":{}},
         "Mounts":[{"Type":"bind","Source":"/s","Destination":"/share","Mode":"ro","RW":false}],
         "NetworkSettings":{"Networks":{"berth-aaa":{"NetworkID":"n","IPAddress":"172.18.0.2"}},"Ports":{"8281/tcp":null}}}
        """#
        let inspect = try EngineJSON.decoder.decode(ContainerInspect.self, from: Data(json.utf8))
        #expect(inspect.state.oomKilled == true)
        #expect(inspect.state.exitCode == 137)
        #expect(inspect.config.labels?["berth.unit"] == "127.0.0.2:8281")
        #expect(inspect.mounts?.first?.rw == false)
        #expect(inspect.networkSettings?.networks?["berth-aaa"]?.ipAddress == "172.18.0.2")
    }

    @Test(arguments: [
        ("unix:///var/run/docker.sock", EngineEndpoint.Kind.unix(path: "/var/run/docker.sock")),
        ("/run/user/1000/docker.sock", .unix(path: "/run/user/1000/docker.sock")),
        ("tcp://127.0.0.1:2375", .tcp(host: "127.0.0.1", port: 2375)),
    ])
    func endpointParsing(text: String, kind: EngineEndpoint.Kind) throws {
        #expect(try EngineEndpoint(parsing: text).kind == kind)
    }

    @Test(arguments: ["unix://relative.sock", "tcp://nohost", "tcp://h:99999", "ssh://x"])
    func badEndpointsAreRejected(text: String) {
        #expect(throws: HTTPClientError.self) { try EngineEndpoint(parsing: text) }
    }

    @Test func dockerHostEnvironmentWins() throws {
        #expect(try EngineEndpoint.fromEnvironment(["DOCKER_HOST": "unix:///tmp/d.sock"]) == .unix("/tmp/d.sock"))
        #expect(try EngineEndpoint.fromEnvironment([:]) == .unix())
    }
}

@Suite struct ErrorMappingTests {
    func response(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(head: HTTPResponseHead(status: status, reason: "Reason"), body: Data(body.utf8))
    }

    @Test func notFoundKeepsTheEngineMessage() {
        let error = EngineError.fromResponse(response(404, #"{"message":"No such container: x"}"#), method: "GET", path: "/v1.41/containers/x/json")
        #expect(error == .notFound(message: "No such container: x", method: "GET", path: "/v1.41/containers/x/json"))
        #expect(error.description == "No such container: x")
    }

    @Test func conflictIsItsOwnCase() {
        let error = EngineError.fromResponse(response(409, #"{"message":"name in use"}"#), method: "POST", path: "/p")
        #expect(error == .conflict(message: "name in use", method: "POST", path: "/p"))
    }

    @Test func otherStatusesCarryCodeMethodAndPath() {
        let error = EngineError.fromResponse(response(500, "plain failure\n"), method: "POST", path: "/p")
        #expect(error == .status(code: 500, message: "plain failure", method: "POST", path: "/p"))
        #expect(error.description == "POST /p: 500 plain failure")
    }

    @Test func emptyBodyFallsBackToTheReason() {
        #expect(EngineError.fromResponse(response(503, ""), method: "GET", path: "/p")
            == .status(code: 503, message: "Reason", method: "GET", path: "/p"))
    }

    @Test func errorsInsideAnImageStreamThrow() {
        let body = Data("{\"status\":\"Downloading\"}\n{\"error\":\"unexpected EOF\"}\n".utf8)
        #expect(throws: EngineError.streamError("unexpected EOF")) { try DockerClient.progressMessages(body) }
    }
}

@Suite struct ResponseHeaderTests {
    @Test func headerNamesMatchWhateverTheirCase() {
        let head = HTTPResponseHead(status: 200, headers: [("Api-Version", "1.41"), ("content-type", "application/json"), ("X-1", "a")])
        #expect(head.header("api-version") == "1.41")
        #expect(head.header("API-VERSION") == "1.41")
        #expect(head.header("Content-Type") == "application/json")
        #expect(head.header("x-1") == "a")
        // Only letters fold: "\r" with bit 0x20 set is "-", yet must not match it; nor does a prefix.
        #expect(head.header("Api\rVersion") == nil)
        #expect(head.header("Api-Versio") == nil)
        #expect(head.header("Server") == nil)
    }

    @Test func headerLinesAreReadAsTheyCameFromTheWire() {
        var head = HTTPResponseHead(status: 200)
        for line in ["Api-Version: 1.41", "Date:\tWed, 02 Dec 2026 00:50:34 GMT", "not a header", "Empty:", "X-Twice: 1", "x-twice: 2"] {
            Array(line.utf8).withUnsafeBytes { head.appendField(line: $0) }
        }
        #expect(head.headers.map { "\($0.name)=\($0.value)" } == [
            "Api-Version=1.41", "Date=Wed, 02 Dec 2026 00:50:34 GMT", "Empty=", "X-Twice=1", "x-twice=2",
        ])
        #expect(head.header("date") == "Wed, 02 Dec 2026 00:50:34 GMT")
        #expect(head.header("Empty") == "")
        #expect(head.header("X-TWICE") == "1")
        #expect(head.header("not a header") == nil)
    }
}
