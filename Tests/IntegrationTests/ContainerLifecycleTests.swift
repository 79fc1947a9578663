import BerthTar
import EngineAPI
import HTTPClient
import Foundation
import Testing

@Suite(.enabled(if: DockerTestSupport.shouldRun, "needs a Docker engine"))
struct ContainerLifecycleTests {
    /// The whole path a unit container takes: limits, mounts, port, init, then reached, read
    /// inside, logged, exec'd, stopped and removed.
    @Test func limitedContainerIsReachableReadableAndRemovable() async throws {
        let client = try await DockerTestSupport.ready()
        let share = FileManager.default.temporaryDirectory.appendingPathComponent("berth-share-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: share, withIntermediateDirectories: true)
        try "shared data\n".write(to: share.appendingPathComponent("readme.txt"), atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: share) }
        let port = try DockerTestSupport.freePort()
        let portSpec = "\(port)/tcp"
        let config = ContainerConfig(
            cmd: ["sh", "-c", "echo started; echo warming >&2; exec nc -ll -p \(port) -e echo unit-ok"],
            exposedPorts: [portSpec: EmptyObject()],
            hostConfig: HostConfig(
                memory: 64 << 20, cpuShares: 512, pidsLimit: 64, binds: ["\(share.path):/share:ro"],
                portBindings: [portSpec: [PortBinding(hostIp: "127.0.0.1", hostPort: String(port))]],
                init: true, securityOpt: ["no-new-privileges"]))

        let id = try await DockerTestSupport.withContainer("lifecycle", config: config) { client, id in
            // Reached on its published port.
            let banner = try await DockerTestSupport.readBanner(host: "127.0.0.1", port: port)
            #expect(banner == "unit-ok\n")

            // What the engine recorded.
            let inspect = try await client.inspectContainer(id)
            #expect(inspect.state.running)
            #expect(inspect.hostConfig.memory == 64 << 20)
            #expect(inspect.hostConfig.cpuShares == 512)
            #expect(inspect.hostConfig.`init` == true)
            #expect(inspect.mounts?.first { $0.destination == "/share" }?.rw == false)

            // Read inside: the cgroup limit and the read-only share.
            let limit = try await client.exec(container: id, config: ExecConfig(cmd: [
                "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
            ]))
            #expect(limit.exitCode == 0)
            #expect(String(decoding: limit.stdout, as: UTF8.self) == "\(64 << 20)\n")
            let read = try await client.exec(container: id, config: ExecConfig(cmd: ["cat", "/share/readme.txt"]))
            #expect(String(decoding: read.stdout, as: UTF8.self) == "shared data\n")
            let write = try await client.exec(container: id, config: ExecConfig(cmd: ["touch", "/share/new"]))
            #expect(write.exitCode != 0)
            #expect(String(decoding: write.stderr, as: UTF8.self).contains("Read-only file system"))
            #expect(!FileManager.default.fileExists(atPath: share.appendingPathComponent("new").path))

            // Logged, the two streams apart.
            var stdout = "", stderr = ""
            for try await frame in try await client.logs(id) {
                switch frame {
                case .stdout(let data): stdout += String(decoding: data, as: UTF8.self)
                case .stderr(let data): stderr += String(decoding: data, as: UTF8.self)
                case .console: Issue.record("a container without a TTY produced console output")
                }
            }
            #expect(stdout == "started\n")
            #expect(stderr == "warming\n")

            try await client.stopContainer(id, timeout: 2)
            #expect(try await client.inspectContainer(id).state.running == false)
            return id
        }
        let version = try await client.apiVersion()
        await #expect(throws: EngineError.notFound(message: "No such container: \(id)", method: "GET", path: "/v\(version)/containers/\(id)/json")) {
            _ = try await client.inspectContainer(id)
        }
    }

    @Test func followedLogsEndWhenTheContainerExits() async throws {
        let config = ContainerConfig(cmd: ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo done >&2"])
        try await DockerTestSupport.withContainer("follow", config: config) { client, id in
            var lines: [String] = []
            for try await frame in try await client.logs(id, options: LogOptions(follow: true)) {
                lines.append(String(decoding: frame.data, as: UTF8.self))
            }
            #expect(lines == ["line 1\n", "line 2\n", "line 3\n", "done\n"])
        }
    }

    @Test func cancellingAFollowedStreamReturnsPromptly() async throws {
        let config = ContainerConfig(cmd: ["sh", "-c", "echo hello; sleep 300"])
        try await DockerTestSupport.withContainer("cancel", config: config) { client, id in
            let stream = try await client.logs(id, options: LogOptions(follow: true))
            let reader = Task {
                var seen = 0
                for try await _ in stream { seen += 1 }
                return seen
            }
            try await Task.sleep(for: .milliseconds(500))
            let start = ContinuousClock.now
            reader.cancel()
            let seen = try await reader.value
            #expect(seen == 1)
            // Not held until the container's 300 s end; the bound leaves room for a suite that
            // loads both cores (3.2 s was seen so).
            #expect(ContinuousClock.now - start < .seconds(10))
        }
    }

    @Test func ttyLogsAreOneConsoleStream() async throws {
        var config = ContainerConfig(cmd: ["sh", "-c", "echo out; echo err >&2"])
        config.tty = true
        try await DockerTestSupport.withContainer("tty", config: config) { client, id in
            _ = try await client.waitContainer(id)
            var frames: [OutputFrame] = []
            for try await frame in try await client.logs(id) { frames.append(frame) }
            #expect(!frames.isEmpty)
            #expect(frames.allSatisfy { if case .console = $0 { true } else { false } })
            let text = frames.map { String(decoding: $0.data, as: UTF8.self) }.joined()
            #expect(text.contains("out") && text.contains("err"))
        }
    }

    @Test func waitReturnsTheExitCode() async throws {
        let config = ContainerConfig(cmd: ["sh", "-c", "exit 3"])
        try await DockerTestSupport.withContainer("wait", config: config) { client, id in
            let status = try await client.waitContainer(id)
            #expect(status.statusCode == 3)
        }
    }

    /// A sample holds the memory used against the limit, and two samples a busy loop's CPU.
    @Test func statsShowMemoryAgainstTheLimitAndABusyLoopsCPU() async throws {
        let config = ContainerConfig(cmd: ["sh", "-c", "while :; do :; done"], hostConfig: HostConfig(memory: 64 << 20))
        try await DockerTestSupport.withContainer("stats", config: config) { client, id in
            let full = try await client.stats(id, oneShot: false)
            #expect(full.memoryStats.limit == 64 << 20)
            #expect((full.memoryStats.used ?? 0) > 0)
            // A full sample compares itself with the engine's previous one.
            #expect((full.cpuStats.percent(since: full.precpuStats) ?? 0) > 1, "\(full)")
            // A second apart, so a suite loading both cores leaves the loop a measurable share
            // (6.6 % was seen over the few milliseconds between back-to-back samples); an idle
            // container shows 0.
            try await Task.sleep(for: .seconds(1))
            let quick = try await client.stats(id)
            #expect(quick.precpuStats.systemUsage == nil)
            #expect((quick.cpuStats.percent(since: full.cpuStats) ?? 0) > 1)
        }
    }

    /// The archive endpoints: a tar stream written as it goes lands in the container, is
    /// described by HEAD, and comes back whole; a missing path is the engine's 404.
    @Test func anArchiveGoesInIsDescribedAndComesBackWhole() async throws {
        try await DockerTestSupport.withContainer("archive", config: ContainerConfig(cmd: ["sleep", "60"])) { client, id in
            let contents = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let tar = UploadStream()
            async let put: Void = client.putArchive(id, path: "/tmp", tar: tar)
            try await tar.write(Data(TarWriter.header(for: TarEntry(path: "in", kind: .directory, mode: 0o750, modified: 1_700_000_000))))
            try await tar.write(Data(TarWriter.header(for: TarEntry(path: "in/data.bin", kind: .file, mode: 0o640, size: contents.count, modified: 1_700_000_100))))
            for start in stride(from: 0, to: contents.count, by: 100_000) {
                try await tar.write(Data(contents[start..<min(start + 100_000, contents.count)]))
            }
            try await tar.write(Data(TarWriter.padding(for: contents.count) + TarWriter.end))
            tar.finish()
            try await put

            let stat = try await client.pathStat(id, path: "/tmp/in/data.bin")
            #expect(stat.name == "data.bin" && stat.size == Int64(contents.count) && stat.permissions == 0o640 && !stat.isDirectory)
            #expect(try await client.pathStat(id, path: "/tmp/in").isDirectory)

            let (described, stream) = try await client.archive(id, path: "/tmp/in")
            #expect(described?.isDirectory == true)
            var reader = TarReader()
            var files: [String: [UInt8]] = [:]
            var current: String?
            for try await chunk in stream {
                try chunk.withUnsafeBytes { bytes in
                    try reader.feed(bytes) { event in
                        switch event {
                        case .begin(let entry): current = entry.path; files[entry.path] = []
                        case .data(let piece): files[current!, default: []] += piece
                        case .end: current = nil
                        }
                    }
                }
            }
            try reader.finish()
            #expect(files["in/data.bin"] == contents)
            await #expect(throws: EngineError.self) { try await client.pathStat(id, path: "/tmp/none") }
        }
    }

    /// Stdin through the engine's taken-over connection: 10 MB in, the same 10 MB back out of
    /// `cat`, whose stdin ends when ours does.
    @Test func attachedExecCarriesStdinBothWaysAndEndsAtItsEnd() async throws {
        try await DockerTestSupport.withContainer("attach", config: ContainerConfig(cmd: ["sleep", "60"])) { client, id in
            var config = ExecConfig(cmd: ["cat"])
            config.attachStdin = true
            let exec = try await client.createExec(container: id, config: config)
            let attached = try await client.attachExec(exec, tty: false)
            let input = Data((0..<(10 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
            async let sent: Void = {
                for start in stride(from: 0, to: input.count, by: 100_000) {
                    try await attached.write(input[start..<min(start + 100_000, input.count)])
                }
                try await attached.closeStdin()
            }()
            var output = Data()
            for try await frame in attached.output {
                guard case .stdout(let data) = frame else { Issue.record("unexpected \(frame)"); continue }
                output += data
            }
            try await sent
            #expect(output.count == input.count)
            #expect(output == input)
            #expect(try await client.exitCode(ofExec: exec) == 0)
        }
    }

    /// A terminal: one console stream, a size that follows a resize, and the shell's exit code.
    @Test func attachedExecWithATerminalFollowsItsSize() async throws {
        try await DockerTestSupport.withContainer("tty", config: ContainerConfig(cmd: ["sleep", "60"])) { client, id in
            var config = ExecConfig(cmd: ["sh"], tty: true)
            config.attachStdin = true
            let exec = try await client.createExec(container: id, config: config)
            let attached = try await client.attachExec(exec, tty: true)
            try await client.resizeExec(exec, rows: 40, columns: 100)
            try await attached.write(Data("stty size; exit 3\n".utf8))
            var output = ""
            for try await frame in attached.output {
                guard case .console(let data) = frame else { Issue.record("unexpected \(frame)"); continue }
                output += String(decoding: data, as: UTF8.self)
            }
            #expect(output.contains("40 100"), "\(output)")
            #expect(try await client.exitCode(ofExec: exec) == 3)
        }
    }

    @Test func execPassesOutputStreamsAndExitCode() async throws {
        let config = ContainerConfig(cmd: ["sleep", "60"])
        try await DockerTestSupport.withContainer("exec", config: config) { client, id in
            let result = try await client.exec(container: id, config: ExecConfig(
                cmd: ["sh", "-c", "echo to-out; echo to-err >&2; exit 7"], env: ["X=1"]))
            #expect(String(decoding: result.stdout, as: UTF8.self) == "to-out\n")
            #expect(String(decoding: result.stderr, as: UTF8.self) == "to-err\n")
            #expect(result.exitCode == 7)
        }
    }

    @Test func listFiltersByLabel() async throws {
        let marker = "list-\(UUID().uuidString.prefix(8))"
        let config = ContainerConfig(cmd: ["sleep", "60"], labels: ["berth.marker": marker])
        try await DockerTestSupport.withContainer("list", config: config, start: false) { client, id in
            let created = try await client.listContainers(all: true, labels: ["berth.marker=\(marker)"])
            #expect(created.map(\.id) == [id])
            #expect(created.first?.state == "created")
            #expect(try await client.listContainers(labels: ["berth.marker=\(marker)"]).isEmpty)
        }
    }

    @Test func nameConflictIsItsOwnError() async throws {
        let config = ContainerConfig(cmd: ["sleep", "60"])
        try await DockerTestSupport.withContainer("conflict", config: config, start: false) { client, id in
            let name = try await client.inspectContainer(id).name.dropFirst()
            var duplicate = config
            duplicate.image = DockerTestSupport.image
            do {
                let other = try await client.createContainer(name: String(name), config: duplicate)
                try? await client.removeContainer(other.id, force: true)
                Issue.record("a second container with the same name was created")
            } catch let error as EngineError {
                guard case .conflict(let message, _, _) = error else { throw error }
                #expect(message.contains("already in use"))
            }
        }
    }

    @Test func missingImageIsNotFound() async throws {
        let client = try await DockerTestSupport.ready()
        await #expect(throws: EngineError.self) {
            _ = try await client.createContainer(config: ContainerConfig(image: "berth-no-such-image:latest"))
        }
        do {
            _ = try await client.inspectImage("berth-no-such-image:latest")
            Issue.record("inspect of a missing image succeeded")
        } catch EngineError.notFound {}
    }
}
