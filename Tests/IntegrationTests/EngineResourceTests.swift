import EngineAPI
import Foundation
import Testing

@Suite(.enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct EngineResourceTests {
    @Test func systemEndpointsDescribeTheEngine() async throws {
        let client = try await DockerTestSupport.ready()
        let version = try await client.version()
        #expect(APIVersion(version.apiVersion)! >= APIVersion.minimumSupported)
        let info = try await client.info()
        #expect((info.nCPU ?? 0) >= 1)
        #expect(try await client.ping() == version.apiVersion)
    }

    @Test func importedImageIsListedAndInspectable() async throws {
        let client = try await DockerTestSupport.ready()
        let image = try await client.inspectImage(DockerTestSupport.image)
        #expect(image.repoTags?.contains(DockerTestSupport.image) == true)
        #expect(image.config?.cmd == ["/bin/sh"])
        let listed = try await client.listImages()
        #expect(listed.contains { $0.id == image.id })
    }

    @Test func importReportsABrokenTarball() async throws {
        let client = try await DockerTestSupport.ready()
        let path = NSTemporaryDirectory() + "berth-broken-\(UUID().uuidString.prefix(8)).tar"
        try Data("this is not a tar archive".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        await #expect(throws: EngineError.self) {
            try await client.importImage(tarball: path, repository: "berth-test-broken")
        }
    }

    @Test func networksCreateConnectInspectRemove() async throws {
        let name = DockerTestSupport.uniqueName("net")
        let client = try await DockerTestSupport.ready()
        let networkID = try await client.createNetwork(NetworkCreate(name: name, labels: [DockerTestSupport.testLabel: "1"]))
        do {
            try await DockerTestSupport.withContainer("netmember", config: ContainerConfig(cmd: ["sleep", "60"])) { client, id in
                try await client.connectNetwork(networkID, container: id, aliases: ["member"])
                let network = try await client.inspectNetwork(networkID)
                #expect(network.name == name)
                #expect(network.containers?[id] != nil)
                #expect(try await client.listNetworks(labels: ["\(DockerTestSupport.testLabel)=1"]).contains { $0.id == networkID })
                try await client.disconnectNetwork(networkID, container: id)
            }
            try await client.removeNetwork(networkID)
        } catch {
            try? await client.removeNetwork(networkID)
            throw error
        }
        do {
            _ = try await client.inspectNetwork(networkID)
            Issue.record("network still exists after removal")
        } catch EngineError.notFound {}
    }

    @Test func eventsStreamReportsLabelledContainers() async throws {
        let client = try await DockerTestSupport.ready()
        let marker = "events-\(UUID().uuidString.prefix(8))"
        let events = try await client.events(filters: ["type": ["container"], "label": ["berth.marker=\(marker)"]])
        let watcher = Task {
            for try await event in events where event.action == "create" {
                return event.actor?.attributes?["berth.marker"]
            }
            return nil
        }
        try await DockerTestSupport.withContainer("events", config: ContainerConfig(labels: ["berth.marker": marker]), start: false) { _, _ in
            let seen = try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask { try await watcher.value }
                group.addTask {
                    try await Task.sleep(for: .seconds(10))
                    watcher.cancel()
                    return nil
                }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
            #expect(seen == marker)
        }
    }
}
