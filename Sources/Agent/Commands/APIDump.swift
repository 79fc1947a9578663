import ArgumentParser
import BerthCLI
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

/// `berth-agent api-dump`: one raw Engine API call, shown like `curl -v --unix-socket`.
struct APIDump: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api-dump",
        abstract: "Send one request to the Docker engine and print the request and the response.",
        discussion: """
            Prints the request headers as sent (> lines), the response status and headers (< lines) \
            and the body: JSON pretty printed, container output labelled stdout/stderr. Streams \
            (logs with follow=1, events) print as they arrive; stop them with Ctrl-C. A PATH \
            without a /vX.Y prefix gets the negotiated API version. Exits non-zero when the \
            engine answers 400 or more.

            Examples:
              berth-agent api-dump GET /_ping
              berth-agent api-dump GET '/containers/json?all=1'
              berth-agent api-dump POST /containers/create --data '{"Image":"berth-unit:latest"}'
              berth-agent api-dump POST '/images/create?fromSrc=-&repo=x' --data @rootfs.tar
            """
    )

    @Option(help: ArgumentHelp("The engine's Unix socket (default: $DOCKER_HOST, else /var/run/docker.sock).", valueName: "path"))
    var socket: String?

    @Argument(help: "HTTP method: GET, POST, DELETE, PUT, HEAD.")
    var method: String

    @Argument(help: "Engine path with an optional query, e.g. /containers/json?all=1.")
    var path: String

    @Option(help: ArgumentHelp("Request body: inline JSON, or @FILE (JSON, or a .tar for image endpoints).", valueName: "json|@file"))
    var data: String?

    mutating func validate() throws {
        method = method.uppercased()
        guard ["GET", "POST", "DELETE", "PUT", "HEAD"].contains(method) else {
            throw ValidationError("method \(method) is not one of GET, POST, DELETE, PUT, HEAD")
        }
        guard path.hasPrefix("/") else {
            throw ValidationError("path must start with /, e.g. /containers/json")
        }
    }

    func run() async throws {
        let endpoint = try socket.map { try EngineEndpoint(parsing: $0) } ?? EngineEndpoint.fromEnvironment()
        let client = DockerClient(endpoint: endpoint)
        let output = DumpPrinter()
        do {
            var request = try await buildRequest(client: client)
            if let body = try requestBody() { request.body = body }
            let response = try await client.transport.stream(
                request, traceRequest: { output.requestHeaders($0) }, streamErrorResponses: true)
            if case .data(let body, let type) = request.body, type == "application/json" {
                output.json(body)
            }
            output.responseHead(response.head)
            var body = ResponseBodyPrinter(head: response.head, output: output)
            for try await chunk in response.body { body.feed(chunk) }
            body.finish()
            if response.head.status >= 400 { throw ExitCode.failure }
        } catch let error as EngineError {
            throw failure("\(error)")
        }
    }

    /// Whether a path starts with an API version, `/v1.41/`.
    static func isVersioned(_ path: String) -> Bool {
        guard path.hasPrefix("/v"), let slash = path.dropFirst(2).firstIndex(of: "/") else { return false }
        let parts = path[path.index(path.startIndex, offsetBy: 2)..<slash].split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
    }

    private func buildRequest(client: DockerClient) async throws -> HTTPRequest {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var enginePath = String(parts[0])
        let isVersioned = Self.isVersioned(enginePath)
        if !isVersioned && enginePath != "/_ping" {
            enginePath = "/v\(try await client.apiVersion())\(enginePath)"
        }
        var query: [(name: String, value: String)] = []
        if parts.count > 1 {
            for item in parts[1].split(separator: "&") where !item.isEmpty {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = percentDecoded(pair[0])
                let value = pair.count > 1 ? percentDecoded(pair[1]) : ""
                query.append((name: name, value: value))
            }
        }
        // Only control calls get a deadline; streams run until the engine or the user ends them.
        return HTTPRequest(method: method, path: enginePath, query: query, timeout: nil)
    }

    private func requestBody() throws -> HTTPRequest.Body? {
        guard let data else { return nil }
        if data.hasPrefix("@") {
            let file = String(data.dropFirst())
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw failure("--data: cannot read \(file)")
            }
            if file.hasSuffix(".tar") || file.hasSuffix(".tar.gz") || file.hasSuffix(".tgz") {
                return .file(path: file, contentType: "application/x-tar")
            }
            let contents = try Data(contentsOf: URL(fileURLWithPath: file))
            return .data(try validJSON(contents, source: file), contentType: "application/json")
        }
        return .data(try validJSON(Data(data.utf8), source: "--data"), contentType: "application/json")
    }

    private func validJSON(_ data: Data, source: String) throws -> Data {
        do {
            _ = try JSONDecoder().decode(JSONValue.self, from: data)
            return data
        } catch DecodingError.dataCorrupted(let context) {
            throw failure("\(source) is not valid JSON (\(context.debugDescription))")
        } catch {
            throw failure("\(source) is not valid JSON")
        }
    }
}

/// `a%20b` as `a b`; text that is not valid percent-encoding is kept as written.
private func percentDecoded(_ text: Substring) -> String {
    let bytes = Array(text.utf8)
    var decoded: [UInt8] = []
    var index = 0
    while index < bytes.count {
        if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
           let byte = UInt8(String(decoding: bytes[index + 1...index + 2], as: UTF8.self), radix: 16) {
            decoded.append(byte)
            index += 3
        } else {
            decoded.append(bytes[index])
            index += 1
        }
    }
    return String(validating: decoded, as: UTF8.self) ?? String(text)
}

/// Writes the dump to stdout unbuffered, so streams show as they arrive.
final class DumpPrinter: Sendable {
    func write(_ text: String) {
        writeUnbuffered(text, to: STDOUT_FILENO)
    }

    func requestHeaders(_ block: String) {
        let lines = block.split(separator: "\r\n", omittingEmptySubsequences: false)
        write(lines.filter { !$0.isEmpty }.map { "> \($0)\n" }.joined() + ">\n")
    }

    func responseHead(_ head: HTTPResponseHead) {
        var text = "< \(head.statusLine)\n"
        for header in head.headers { text += "< \(header.name): \(header.value)\n" }
        write(text + "<\n")
    }

    /// Pretty prints one JSON document, or writes it as it is when it is not JSON.
    func json(_ data: Data) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let value = try? JSONDecoder().decode(JSONValue.self, from: data), let pretty = try? encoder.encode(value) {
            write(String(decoding: pretty, as: UTF8.self) + "\n")
        } else {
            write(String(decoding: data, as: UTF8.self) + "\n")
        }
    }
}

/// Chooses how to show a body from its first bytes: JSON documents (one per line, as the engine
/// writes them), container output frames, or plain text.
struct ResponseBodyPrinter {
    private enum Mode { case undecided, json, frames, text }

    private let output: DumpPrinter
    private var mode: Mode
    private var lines = LineSplitter()
    private var demux = StreamDemux(tty: false)
    private var prefix = Data()

    init(head: HTTPResponseHead, output: DumpPrinter) {
        self.output = output
        let type = head.header("Content-Type") ?? ""
        mode = type.contains("json") ? .json : .undecided
    }

    mutating func feed(_ chunk: Data) {
        switch mode {
        case .undecided:
            prefix.append(chunk)
            guard prefix.count >= 8 else { return }
            mode = StreamDemux.looksMultiplexed(prefix) ? .frames : .text
            let buffered = prefix
            prefix = Data()
            feed(buffered)
        case .json:
            for line in lines.feed(chunk) { output.json(line) }
        case .frames:
            do {
                for frame in try demux.feed(chunk) { show(frame) }
            } catch {
                output.write("(\(error); the rest as it came)\n")
                mode = .text
            }
        case .text:
            output.write(String(decoding: chunk, as: UTF8.self))
        }
    }

    mutating func finish() {
        switch mode {
        case .undecided where !prefix.isEmpty:
            output.write(String(decoding: prefix, as: UTF8.self) + "\n")
        case .json where !lines.remainder.isEmpty:
            output.json(lines.remainder)
        default:
            break
        }
    }

    private func show(_ frame: OutputFrame) {
        let label: String
        switch frame {
        case .stdout: label = "stdout"
        case .stderr: label = "stderr"
        case .console: label = "console"
        }
        var text = String(decoding: frame.data, as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        output.write(text.split(separator: "\n", omittingEmptySubsequences: false).map { "[\(label)] \($0)\n" }.joined())
    }
}
