import Foundation
import Testing
import TestSupport
@testable import BerthConfig
import BerthAPI
@testable import BerthCore

/// Property tests over everything Berth parses from outside: `docker_server.xml`,
/// `docker_user.xml` and the request bodies of both daemons. Seeded mutations of valid inputs (the
/// shipped samples; the wire types' own JSON) must never crash, and must be refused only the
/// documented way: configuration problems as `FILE:LINE: message`, bodies as one-line errors.
///
/// Deterministic: every case is made from the seed and its number, and a failure prints both.
/// `BERTH_FUZZ_SEED` replays another run, `BERTH_FUZZ_CASES` makes one longer.
///
/// One test at a time: each keeps a thread of Swift's small pool busy for seconds, and two at once
/// on two cores would starve every other suite's tasks.
@Suite(.serialized) struct InputFuzzTests {
    static let environment = ProcessInfo.processInfo.environment
    static let seed = environment["BERTH_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_261_122
    static let cases = environment["BERTH_FUZZ_CASES"].flatMap { Int($0) } ?? 2000
    /// Per property, so `make test` stays bounded whatever the machine; a longer run asked for
    /// with `BERTH_FUZZ_CASES` gets the time it needs.
    static let budget: Duration = environment["BERTH_FUZZ_CASES"] == nil ? .seconds(4) : .seconds(3600)

    // MARK: - Configuration files

    @Test func mutatedServerConfigsAreAcceptedOrRefusedWithFileAndLine() throws {
        let files = try FuzzFolder()
        let sample = try files.sample("docker_server.xml")
        try #require(ServerConfig.load(path: files.write("valid.xml", sample)).config != nil, "the sample itself must load")
        fuzz("docker_server.xml", make: { rng in Mutator.xml.mutate(sample, &rng) }) { input in
            let path = try files.write("server.xml", input)
            let (config, problems) = ServerConfig.load(path: path)
            return Self.checkConfigOutcome(accepted: config != nil, problems: problems, path: path, input: input)
        }
    }

    @Test func mutatedUserConfigsAreAcceptedOrRefusedWithFileAndLine() throws {
        let files = try FuzzFolder()
        let server = try #require(ServerConfig.load(path: files.write("server.xml", try files.sample("docker_server.xml"))).config)
        let sample = try files.sample("docker_user.xml")
        try #require(UsersConfig.load(path: files.write("valid.xml", sample), server: server).config != nil, "the sample itself must load")
        fuzz("docker_user.xml", make: { rng in Mutator.xml.mutate(sample, &rng) }) { input in
            let path = try files.write("users.xml", input)
            let (config, problems) = UsersConfig.load(path: path, server: server)
            return Self.checkConfigOutcome(accepted: config != nil, problems: problems, path: path, input: input)
        }
    }

    @Test(arguments: [
        ("an external entity", #"<!DOCTYPE Config [<!ENTITY x SYSTEM "file://MARKER">]><Config><Server>&x;</Server><Share>SHARE</Share></Config>"#),
        ("a parameter entity", #"<!DOCTYPE Config [<!ENTITY % x SYSTEM "file://MARKER"> %x;]><Config><Share>SHARE</Share></Config>"#),
        ("nested entities", "<!DOCTYPE Config [" + (1...9).map { #"<!ENTITY e\#($0) "\#(String(repeating: "&e\($0 - 1);", count: 10))">"# }
            .joined().replacingOccurrences(of: "&e0;", with: "lol") + "]><Config><Server>&e9;</Server><Share>SHARE</Share></Config>"),
        ("deep nesting", "<Config>" + String(repeating: "<a>", count: 100_000) + "</Config>"),
        ("a 4 MB value", "<Config><Server>" + String(repeating: "1", count: 4 << 20) + "</Server><Share>SHARE</Share></Config>"),
        ("UTF-16 declared", #"<?xml version="1.0" encoding="UTF-16"?><Config><Share>SHARE</Share></Config>"#),
    ])
    func hostileServerConfigsAreRefusedQuicklyWithoutReadingOtherFiles(name: String, text: String) throws {
        let files = try FuzzFolder()
        let marker = "secret-\(UUID().uuidString)"
        let markerFile = try files.write("marker.txt", Array(marker.utf8))
        let input = Array(text.replacingOccurrences(of: "MARKER", with: markerFile).replacingOccurrences(of: "SHARE", with: files.share).utf8)
        let path = try files.write("server.xml", input)
        let clock = ContinuousClock()
        let begun = clock.now
        let (config, problems) = ServerConfig.load(path: path)
        #expect(clock.now - begun < .seconds(5), "\(name): took \(clock.now - begun)")
        #expect(config == nil, "\(name) was accepted")
        #expect(!problems.contains { $0.message.contains(marker) }, "\(name): another file's contents leaked into a message")
        if let failure = Self.checkConfigOutcome(accepted: config != nil, problems: problems, path: path, input: input) {
            Issue.record("\(name): \(failure)")
        }
    }

    /// Found by the fuzzer: libxml2 crashed the process on a byte invalid in a declared encoding
    /// it reaches through iconv. Such files are converted by Berth, the esProc design's GBK files
    /// included.
    @Test func filesInOtherEncodingsLoadOrAreRefusedOnTheirLine() throws {
        let files = try FuzzFolder()
        let declaration = Array(#"<?xml version="1.0" encoding="GBK"?>"#.utf8) + [0x0A]
        let body = Array("<Config>\n<Server>127.0.0.76:9001</Server>\n<Share>\(files.share)</Share>\n".utf8)
        // 张三 in GBK, as a comment: the file loads and the value is read correctly.
        let gbk = try files.write("gbk.xml", declaration + body + Array("<!-- ".utf8) + [0xD5, 0xC5, 0xC8, 0xFD] + Array(" -->\n</Config>\n".utf8))
        #expect(ServerConfig.load(path: gbk).config?.server == HostPort(host: "127.0.0.76", port: 9001))
        let invalid = try files.write("invalid.xml", declaration + body + [0xFF, 0xFF] + Array("\n</Config>\n".utf8))
        let refused = ServerConfig.load(path: invalid).problems.map(\.description)
        #expect(refused == ["\(invalid):5: not well-formed XML: the file is not valid in its declared encoding GBK (save it as UTF-8)"])
        for name in ["UTF-8..", "bogus", "Shift_JIS", "EUC-JP"] {
            let path = try files.write("other.xml", Array(#"<?xml version="1.0" encoding="\#(name)"?>"#.utf8) + [0x0A] + body + [0x8E, 0xFF] + Array("</Config>".utf8))
            let (config, problems) = ServerConfig.load(path: path)
            #expect(config == nil && problems.count == 1 && problems[0].line >= 1, "\(name): \(problems)")
        }
    }

    /// What every load must satisfy: accepted exactly when no problem is an error, and every
    /// problem one line that points into this file.
    static func checkConfigOutcome(accepted: Bool, problems: [ConfigProblem], path: String, input: [UInt8]) -> String? {
        if accepted == problems.contains(where: \.isError) {
            return accepted ? "accepted with errors: \(problems)" : "refused without an error"
        }
        let lines = input.count { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") } + 1
        for problem in problems {
            guard problem.file == path, (1...lines).contains(problem.line), problem.description.hasPrefix("\(path):\(problem.line): ") else {
                return "not FILE:LINE within the file's \(lines) lines: \(problem)"
            }
            guard !problem.message.isEmpty, !problem.message.contains(where: \.isNewline) else {
                return "not one line: \(problem)"
            }
            guard problem.message.count <= 400 else {
                return "a message of \(problem.message.count) characters: \(problem.message.prefix(200))…"
            }
        }
        return nil
    }

    // MARK: - Request bodies

    @Test func mutatedRequestBodiesDecodeOrGetAOneLineError() throws {
        let unit = HostPort(host: "192.168.0.76", port: 8281)
        let samples: [(String, [UInt8], ([UInt8]) -> String?)] = try [
            Self.body(LoginRequest(user: "aaa", password: "123456", force: false)),
            Self.body(StartUnitRequest(user: "aaa", session: "4f1c", unit: unit, memory: try MemorySpec(parsing: "500m,128m"), cpu: 512, home: "/opt/app/aaa", unitSecret: "k")),
            Self.body(StopUnitsRequest(user: "aaa", session: "4f1c", units: [unit], saveLogs: true)),
            Self.body(ExecRequest(user: "aaa", unit: unit, command: ["ls", "-l", "/app"])),
            Self.body(ClientExecRequest(unit: unit, command: ["sh", "-c", "echo 张三"])),
        ]
        fuzz("request bodies", make: { rng in
            let (_, sample, _) = samples[Int.random(in: 0..<samples.count, using: &rng)]
            return Mutator.json.mutate(sample, &rng)
        }) { input in
            for (name, _, check) in samples {
                if let failure = check(input) { return "as \(name): \(failure)" }
            }
            return nil
        }
    }

    @Test func hostileRequestBodiesGetAOneLineError() throws {
        let hostile: [[UInt8]] = [
            Array(String(repeating: "[", count: 100_000).utf8),
            Array(String(repeating: #"{"a":"#, count: 50_000).utf8),
            Array(#"{"user": "\#(String(repeating: "a", count: 1 << 20))"}"#.utf8),
            Array(#"{"unit": "\#(String(repeating: "1.", count: 1 << 19))1:1", "command": []}"#.utf8),
            Array(#"{"unit": "host\nname:80", "command": ["x"]}"#.utf8),
            [0xEF, 0xBB, 0xBF] + Array(#"{"user": "a", "password": "\ud800", "force": 1e999}"#.utf8),
            [],
        ]
        for input in hostile {
            #expect(Self.check(LoginRequest.self, input) == nil, "\(Mutator.show(input))")
            #expect(Self.check(ClientExecRequest.self, input) == nil, "\(Mutator.show(input))")
        }
    }

    /// A sample body and the property for its type.
    static func body<T: Codable>(_ value: T) throws -> (String, [UInt8], ([UInt8]) -> String?) {
        ("\(T.self)", Array(try BerthJSON.encoder.encode(value)), { check(T.self, $0) })
    }

    /// Decodes or refuses in one line; what decodes encodes to JSON that decodes to the same.
    static func check<T: Codable>(_ type: T.Type, _ input: [UInt8]) -> String? {
        do throws(RequestBodyError) {
            let value = try BerthJSON.decodeRequest(type, from: Data(input))
            guard let encoded = try? BerthJSON.encoder.encode(value),
                let again = try? BerthJSON.encoder.encode(BerthJSON.decodeRequest(type, from: encoded)), again == encoded
            else { return "decoded, but does not encode and decode back to itself" }
            return nil
        } catch {
            let message = error.description
            guard !message.isEmpty, !message.contains(where: \.isNewline), message.count <= 400 else {
                return "not a short single line: \(message.prefix(300))"
            }
            return nil
        }
    }

    // MARK: - The loop

    /// Runs `property` on up to `cases` inputs, each made by `make` from a generator of its own, so
    /// that the seed and the case number replay a failure. Stops at the first failure or when the
    /// budget is spent; `property` returns nil when it holds.
    func fuzz(_ name: String, make: (inout SeededGenerator) -> [UInt8], property: ([UInt8]) throws -> String?) {
        let clock = ContinuousClock()
        let end = clock.now + Self.budget
        var done = 0
        for number in 0..<Self.cases where clock.now < end {
            var rng = SeededGenerator(seed: Self.seed, case: number)
            let input = make(&rng)
            do {
                if let failure = try property(input) {
                    Issue.record("\(name), BERTH_FUZZ_SEED=\(Self.seed) case \(number): \(failure)\ninput: \(Mutator.show(input))")
                    return
                }
            } catch {
                Issue.record("\(name), BERTH_FUZZ_SEED=\(Self.seed) case \(number): threw \(error)\ninput: \(Mutator.show(input))")
                return
            }
            done += 1
        }
        #expect(done >= min(Self.cases, 100), "\(name): only \(done) cases within \(Self.budget)")
    }
}

/// Byte-level mutations of a valid input, plus insertions of tokens that mean something to the
/// format, so mutants reach past the first syntax check.
struct Mutator {
    let tokens: [[UInt8]]

    static let xml = Mutator(tokens: [
        "<", ">", "/>", "&", "&amp;", "&#0;", "&#x110000;", "&bogus;", "]]>", "<![CDATA[x]]>", "<!--", "-->", "<?xml version=\"1.0\"?>",
        "<Config>", "</Config>", "<Users>", "</Users>", "<User>", "</User>", "<Unit>", "</Unit>", "<Server>", "<Share>", "<Name>aaa</Name>",
        "<Memory>", "<CPU>", "<Home>", " a=\"1\"", "=", "\"", "'", "张三", "ｍ", "１", "1.5g", "0m", "3m", "4m", "99999999999999999999g",
        "-1", "0", "65536", "9001", "..", "/", "./x", "127.0.0.1:", ":9001", "192.168.0.76:8281", ",", ",,", " ", "\n", "\r", "\r\n", "\t",
        "\u{0}", "\u{FEFF}", "\u{202E}",
    ].map { Array($0.utf8) } + [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]])

    static let json = Mutator(tokens: [
        "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u0000", "\\ud800", "\\n", "null", "true", "false", "0", "-0", "1e999", "-1",
        "18446744073709551616", "1.5", "\"\"", "{}", "[]", "\"127.0.0.1:99999\"", "\"::\"", "\"a:b\"", "\"192.168.0.76\"",
        "\"user\"", "\"unit\"", "\"units\"", "\"command\"", "\"memory\"", "\"cpu\"", "\"force\"", "\"saveLogs\"", " ", "\n", "\u{0}",
        "\"" + String(repeating: "x", count: 3000) + "\"",
    ].map { Array($0.utf8) } + [[0xFF], [0xC3], [0xED, 0xA0, 0x80]])

    func mutate(_ input: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let at = Int.random(in: 0...bytes.count, using: &rng)
            let length = Int.random(in: 1...32, using: &rng)
            switch Int.random(in: 0..<8, using: &rng) {
            case 0 where at < bytes.count:
                bytes[at] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 1 where at < bytes.count:
                bytes[at] = UInt8.random(in: 0...255, using: &rng)
            case 2:
                bytes.removeSubrange(at..<min(at + length, bytes.count))
            case 3:
                let from = Int.random(in: 0...bytes.count, using: &rng)
                bytes.insert(contentsOf: bytes[from..<min(from + length * 2, bytes.count)], at: at)
            case 4:
                bytes.removeSubrange(at...)
            case 5:
                bytes.insert(contentsOf: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            default:
                bytes.insert(contentsOf: tokens[Int.random(in: 0..<tokens.count, using: &rng)], at: at)
            }
        }
        return bytes
    }

    /// An input as printable text for a failure message: escapes, and at most 2,000 bytes.
    static func show(_ input: [UInt8]) -> String {
        let text = String(decoding: input.prefix(2000), as: UTF8.self).unicodeScalars
            .map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? String($0) : $0.escaped(asASCII: true) }.joined()
        return "\"\(text)\"" + (input.count > 2000 ? " … (\(input.count) bytes)" : "")
    }
}

/// A folder for one test's files: an existing share and secret, so the samples are valid.
final class FuzzFolder {
    let path = NSTemporaryDirectory() + "berth-fuzz-\(UUID().uuidString.prefix(8))"
    var share: String { path + "/share" }
    /// The folder of the samples' TLS files (a CA, the entry host's certificate and key).
    let tls: String

    init() throws {
        try FileManager.default.createDirectory(atPath: path + "/share", withIntermediateDirectories: true)
        try Data("cluster-key-of-more-than-32-bytes\n".utf8).write(to: URL(fileURLWithPath: path + "/cluster.key"))
        chmod(path + "/cluster.key", 0o600)
        tls = try writeTLSFiles(in: path, host: "192.168.0.76", manager: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A shipped sample, with this folder's share and secret in place of the example paths.
    func sample(_ name: String) throws -> [UInt8] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("Resources/templates/samples/" + name), encoding: .utf8)
        return Array(text.replacingOccurrences(of: "/home/docker/share", with: share)
            .replacingOccurrences(of: "/etc/berth/cluster.key", with: path + "/cluster.key")
            .replacingOccurrences(of: "/etc/berth/tls", with: tls).utf8)
    }

    @discardableResult
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }
}
