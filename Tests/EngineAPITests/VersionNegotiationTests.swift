import Foundation
import TestSupport
import Testing

@testable import EngineAPI
@testable import HTTPClient

@Suite struct VersionNegotiationTests {
    @Test func engineVersionInRangeIsUsed() throws {
        #expect(try APIVersion.negotiate(engine: "1.41") == APIVersion(1, 41))
        #expect(try APIVersion.negotiate(engine: "1.45") == APIVersion(1, 45))
    }

    @Test func newerEngineIsCappedAtTheClientMaximum() throws {
        #expect(try APIVersion.negotiate(engine: "1.51") == APIVersion.maximumSupported)
    }

    @Test func olderEngineIsRefusedClearly() {
        #expect(throws: EngineError.unsupportedEngine(engineVersion: "1.40", minimum: "1.41")) {
            try APIVersion.negotiate(engine: "1.40")
        }
    }

    @Test func versionsCompareNumerically() {
        #expect(APIVersion("1.9")! < APIVersion("1.41")!)
        #expect(APIVersion("x.y") == nil)
    }

    @Test func clientRefusesAnOldEngineOverTheWire() async throws {
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nApi-Version: 1.30\r\nContent-Length: 2\r\n\r\nOK")
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path))
        await #expect(throws: EngineError.unsupportedEngine(engineVersion: "1.30", minimum: "1.41")) {
            _ = try await client.version()
        }
    }

    @Test func requestsUseTheNegotiatedPrefix() async throws {
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK")
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path))
        let request = try await client.makeRequest("GET", "/containers/json")
        #expect(request.path == "/v1.43/containers/json")
    }
}

@Suite struct UnreachableEngineTests {
    @Test func missingSocketFailsFastAndSaysWhere() async {
        let client = DockerClient(endpoint: .unix("/nonexistent/docker.sock"))
        let start = ContinuousClock.now
        do {
            try await client.ping()
            Issue.record("ping succeeded without an engine")
        } catch let error as EngineError {
            guard case .unreachable(let endpoint, _) = error else {
                Issue.record("expected unreachable, got \(error)")
                return
            }
            #expect(endpoint == "/nonexistent/docker.sock")
            #expect(error.description.hasPrefix("Docker engine not reachable at /nonexistent/docker.sock: "))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        // Far under the 30 s request timeout; the whole suite on 2 busy cores once took 2.2 s here.
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func silentEngineTimesOutInsteadOfHanging() async throws {
        let engine = try FakeServer(response: nil)
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path), timeout: .milliseconds(500))
        let start = ContinuousClock.now
        await #expect(throws: EngineError.self) { try await client.ping() }
        // The 0.5 s timeout, not a hang; slack for 2 cores busy with other suites.
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func cancellingTheTaskAbortsTheTransfer() async throws {
        let engine = try FakeServer(response: nil)
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path), timeout: .seconds(60))
        let task = Task { try await client.ping() }
        try await Task.sleep(for: .milliseconds(200))
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: EngineError.cancelled) { try await task.value }
        // Far sooner than the 60 s timeout: the cancel wakes the worker waiting for the socket (0.2 s
        // here, the sleep above), and a loaded machine (two cores starting fifty suites at once)
        // has added over ten seconds to resuming.
        #expect(ContinuousClock.now - start < .seconds(30))
    }
}

/// Tasks that prefer the transport's executor send on their own thread; that path must behave
/// like the hand-off one.
@Suite struct TransportExecutorTests {
    @Test func requestsOnTheExecutorGetTheirAnswers() async throws {
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK")
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path))
        // Several at once: each runs on a worker of its own, with its own connection.
        let answers = try await withThrowingTaskGroup(of: String.self, returning: [String].self) { group in
            for _ in 0..<8 {
                group.addTask(executorPreference: client.transport.executor) { try await client.ping() }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers == Array(repeating: "1.43", count: 8))
    }

    /// However long a worker polls before it sleeps, an answer that comes in pieces, sooner or
    /// later than the poll ends, arrives whole.
    @Test(arguments: [Duration.zero, Transport.defaultBusyPoll, .seconds(1)])
    func answersArriveWhateverTheBusyPoll(busyPoll: Duration) async throws {
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 12\r\n\r\nhello, world", pause: .milliseconds(30))
        defer { engine.stop() }
        let transport = Transport(endpoint: .unix(engine.path), busyPoll: busyPoll)
        let request = HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(10))
        let pooled = try await transport.send(request)
        #expect(pooled.status == 200)
        #expect(String(decoding: pooled.body, as: UTF8.self) == "hello, world")
        let here = try await Task(executorPreference: transport.executor) { try await transport.send(request) }.value
        #expect(String(decoding: here.body, as: UTF8.self) == "hello, world")
    }

    @Test func cancellingATaskOnTheExecutorAbortsItsTransfer() async throws {
        let engine = try FakeServer(response: nil)
        defer { engine.stop() }
        let client = DockerClient(endpoint: .unix(engine.path), timeout: .seconds(60))
        let task = Task(executorPreference: client.transport.executor) { try await client.ping() }
        try await Task.sleep(for: .milliseconds(200))
        let start = ContinuousClock.now
        task.cancel()
        await #expect(throws: EngineError.cancelled) { try await task.value }
        // Far sooner than the 60 s timeout: the cancel wakes the worker waiting for the socket (0.2 s
        // here, the sleep above), and a loaded machine (two cores starting fifty suites at once)
        // has added over ten seconds to resuming.
        #expect(ContinuousClock.now - start < .seconds(30))
    }

    @Test func blockingWorkRunsOffSwiftsThreads() async throws {
        let client = DockerClient(endpoint: .unix("/nonexistent/docker.sock"))
        let name = await client.transport.runBlocking { threadName() }
        #expect(name == "berth-curl")
        let nested = await Task(executorPreference: client.transport.executor) {
            await client.transport.runBlocking { threadName() }
        }.value
        #expect(nested == "berth-curl")
    }

    @Test func aReleasedTransportLetsItsThreadsGo() async throws {
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Length: 2\r\n\r\nOK")
        defer { engine.stop() }
        weak var pool: CurlWorkerPool?
        do {
            let client = DockerClient(endpoint: .unix(engine.path))
            pool = client.transport.pool
            try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<4 { group.addTask { try await client.ping() } }
                try await group.waitForAll()
            }
            #expect(pool != nil)
        }
        // Its workers held it; they leave once nothing is queued, and it goes with the last one.
        let deadline = ContinuousClock.now + .seconds(5)
        while pool != nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(pool == nil, "the pool's worker threads outlived its transport")
    }
}

private func threadName() -> String {
    let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
    return comm.trimmingCharacters(in: .whitespacesAndNewlines)
}
