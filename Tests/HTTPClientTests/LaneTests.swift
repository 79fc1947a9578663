import Foundation
import TestSupport
import Testing
@testable import HTTPClient

/// Requests that wait for a worker, and streams that hold theirs for as long as they last.
@Suite struct LaneTests {
    static let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"

    /// Every request worker is held by a request that never gets its answer: the next request
    /// still fails at its own timeout, and one cancelled while waiting returns at once.
    @Test func aRequestWaitingForAWorkerHonoursItsTimeoutAndCancellation() async throws {
        let engine = try FakeServer(response: Self.ok, silentFor: "/hang")
        defer { engine.stop() }
        let transport = Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)), lanes: .init(requests: 1, streams: 1))
        let hold = Task { try await transport.send(HTTPRequest(method: "GET", path: "/hang")) }
        defer { hold.cancel() }
        try await Task.sleep(for: .milliseconds(200))
        let clock = ContinuousClock()
        var start = clock.now
        await #expect(throws: HTTPClientError.self) {
            _ = try await transport.send(HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(1)))
        }
        // Waiting for the worker, it would get its answer only when the held request's connection
        // ends (30 s); the bounds leave room for a machine the rest of the suite keeps busy.
        #expect(clock.now - start < .seconds(15), "timed out after \(clock.now - start)")
        let waiting = Task { try await transport.send(HTTPRequest(method: "GET", path: "/_ping")) }
        try await Task.sleep(for: .milliseconds(300))
        start = clock.now
        waiting.cancel()
        let outcome = await waiting.result
        #expect(clock.now - start < .seconds(10), "cancelled after \(clock.now - start)")
        guard case .failure(HTTPClientError.cancelled) = outcome else {
            Issue.record("expected a cancellation, got \(outcome)")
            return
        }
    }

    /// Streams that never end fill their own lane only: a request is answered at once, and a
    /// stream waiting for the lane can still be cancelled.
    @Test func streamsDoNotTakeTheWorkersRequestsNeed() async throws {
        let engine = try FakeServer(response: Self.ok, silentFor: "/follow")
        defer { engine.stop() }
        let transport = Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)), lanes: .init(requests: 2, streams: 2))
        let streams = (0..<3).map { _ in Task { try await transport.stream(HTTPRequest(method: "GET", path: "/follow")) } }
        defer { for stream in streams { stream.cancel() } }
        try await Task.sleep(for: .milliseconds(300))
        let clock = ContinuousClock()
        let start = clock.now
        let answer = try await transport.send(HTTPRequest(method: "GET", path: "/_ping", timeout: .seconds(20)))
        #expect(answer.status == 200)
        #expect(clock.now - start < .seconds(15))
        streams[2].cancel()
        if case .success = await streams[2].result { Issue.record("a stream cancelled while waiting for the lane went on") }
    }

    /// A reader that stops and lets go of a long body (a client that hung up) ends the transfer:
    /// its worker is free again at once, not waiting for ever for room in the reader's window.
    @Test func aStreamWhoseReaderLetsGoEndsItsTransfer() async throws {
        let body = String(repeating: "x", count: 16 << 20)
        let engine = try FakeServer(response: "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        defer { engine.stop() }
        let transport = Transport(endpoint: HTTPEndpoint(.unix(path: engine.path)), streamWindow: 1 << 20, lanes: .init(requests: 1, streams: 1))
        do {
            let first = try await transport.stream(HTTPRequest(method: "GET", path: "/logs"))
            for try await _ in first.body { break }
        }
        // The only stream worker is free again: the next stream gets its head.
        let clock = ContinuousClock()
        let start = clock.now
        let second = try await transport.stream(HTTPRequest(method: "GET", path: "/logs", timeout: .seconds(20)))
        #expect(second.head.status == 200)
        #expect(clock.now - start < .seconds(15))
    }
}
