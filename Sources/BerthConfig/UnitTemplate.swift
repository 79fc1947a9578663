import BerthAPI
import BerthCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An admin's container template: a JSON fragment of a Docker create body with
/// `{{user}} {{ip}} {{port}} {{memory}} {{newsize}} {{cpu}}` placeholders, rendered as raw JSON so
/// that every field reaches Docker as written, once `problems(_:)` has found nothing that loosens
/// a unit's confinement.
public struct UnitTemplate: Sendable {
    public static let placeholders = ["user", "ip", "port", "memory", "newsize", "cpu"]

    /// Where it came from, for error messages.
    public let source: String
    public let text: String

    public init(source: String, text: String) {
        self.source = source
        self.text = text
    }

    /// The built-in default, the same as `Resources/templates/unit.json`.
    public static let builtIn = UnitTemplate(source: "built-in unit template", text: """
        {
          "Image": "berth-unit:latest",
          "Cmd": ["/bin/berth-unit", "serve", "--port", "{{port}}"],
          "Env": ["BERTH_USER={{user}}", "BERTH_UNIT={{ip}}:{{port}}", "BERTH_CPU_SHARES={{cpu}}"]
        }
        """)

    /// Values like a real unit's, at both ends of what the configuration allows, so that a
    /// placeholder written where a number goes (`"PidsLimit": {{cpu}}`) is checked at its extremes.
    static let sampleValues: [[String: String]] = [
        ["user": "check", "ip": "192.0.2.1", "port": "8281", "memory": "512m", "newsize": "256m", "cpu": "2"],
        ["user": "x", "ip": "198.51.100.254", "port": "65535", "memory": "4m", "newsize": "2m", "cpu": "262144"],
    ]

    /// Reads a template file and renders it with sample values: valid JSON, an object, no unknown
    /// placeholders. What it sets is checked by `problems(_:)`.
    public static func load(path: String) throws(ConfigError) -> UnitTemplate {
        let bytes: [UInt8]
        do throws(ConfigError) {
            bytes = try ConfigFileReader.contents(of: path)
        } catch {
            throw ConfigError("template \(path) is not readable: \(error.message)")
        }
        guard bytes.count <= ConfigFileReader.maximumSize else {
            throw ConfigError("template \(path) is over \(ConfigFileReader.maximumSize >> 20) MB; is it the right file?")
        }
        let template = UnitTemplate(source: path, text: String(decoding: bytes, as: UTF8.self))
        for values in sampleValues {
            _ = try template.render(values)
        }
        return template
    }

    /// The create body for one unit: each placeholder replaced once by its value (values are
    /// never read as placeholders), then parsed. Berth's own settings are merged over it later.
    public func render(_ values: [String: String]) throws(ConfigError) -> [String: JSONValue] {
        switch renderedObject(values) {
        case .success(let body): return body
        case .failure(let reason): throw ConfigError("\(source): \(reason.message)")
        }
    }

    /// Every problem of this template under `policy`, errors and warnings, as rendered with
    /// sample values. A placeholder can only be judged by its value: the agent checks each real
    /// render with `UnitTemplate.problems(in:_:)` too.
    public func problems(_ policy: TemplatePolicy) -> [TemplateProblem] {
        var found: [TemplateProblem] = []
        var volumesPerRender: [Set<TemplateCheck.NamedVolume>] = []
        for values in Self.sampleValues {
            switch renderedObject(values) {
            case .failure(let reason):
                return [TemplateProblem(field: "", message: reason.message, isWarning: false)]
            case .success(let body):
                for problem in Self.problems(in: body, policy) where !found.contains(problem) {
                    found.append(problem)
                }
                volumesPerRender.append(TemplateCheck.namedVolumes(in: body))
            }
        }
        // The sample users differ, so a volume named the same in both renders is every user's.
        for volume in volumesPerRender.dropFirst().reduce(volumesPerRender.first ?? [], { $0.intersection($1) }).sorted() {
            found.append(TemplateProblem(
                field: volume.field, message: "volume \"\(volume.name)\" would be shared by every user's units; put {{user}} in its name",
                isWarning: false))
        }
        return found
    }

    /// Whether a container path is one of Berth's own mounts (`/app`, `/share` or below, however
    /// spelled), where a template's bind or mount is dropped.
    public static func isBerthMount(target: String) -> Bool {
        TemplateCheck.isBerthMountTarget(target)
    }

    /// Every problem of one rendered create body under `policy`.
    public static func problems(in body: [String: JSONValue], _ policy: TemplatePolicy) -> [TemplateProblem] {
        var check = TemplateCheck(policy: policy)
        check.createBody(body)
        return check.problems
    }

    private func renderedObject(_ values: [String: String]) -> Result<[String: JSONValue], ConfigError> {
        let known = "known: " + Self.placeholders.map { "{{\($0)}}" }.joined(separator: " ")
        var text = ""
        var rest = self.text[...]
        while let open = Self.firstPlaceholderStart(in: rest) {
            text += rest[..<open]
            let inside = rest[rest.index(open, offsetBy: 2)...]
            guard let close = inside.firstIndex(of: "}"), inside[close...].hasPrefix("}}") else {
                return .failure(ConfigError("unknown placeholder \(rest[open...].prefix(40)); \(known)"))
            }
            let name = String(inside[..<close])
            guard Self.placeholders.contains(name) else {
                return .failure(ConfigError("unknown placeholder {{\(name)}}; \(known)"))
            }
            text += values[name] ?? ""
            rest = inside[inside.index(close, offsetBy: 2)...]
        }
        text += rest
        let parsed: JSONValue
        do {
            parsed = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        } catch {
            return .failure(ConfigError("not a Docker create body: \(error)"))
        }
        guard case .object(let body) = parsed else {
            return .failure(ConfigError("not a Docker create body: a JSON object {…} is expected, not \(parsed.description.prefix(40))"))
        }
        return .success(body)
    }

    /// Where the first `{{` is (JSON itself never has two `{` in a row outside a string).
    private static func firstPlaceholderStart(in text: Substring) -> Substring.Index? {
        var index = text.startIndex
        while let open = text[index...].firstIndex(of: "{") {
            let next = text.index(after: open)
            if next < text.endIndex && text[next] == "{" { return open }
            index = next
        }
        return nil
    }
}
