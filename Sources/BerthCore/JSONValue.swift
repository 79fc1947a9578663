import BerthAPI
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Any JSON document, kept as parsed so that it can be checked and then sent on unchanged:
/// a container template passes fields Berth has no model for straight to Docker.
///
/// Whole numbers that fit in 64 bits stay `integer`, so `NanoCpus` or `Memory` round-trip exactly.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The value of `key` when this is an object holding that exact key.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members[key]
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { members } else { nil }
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    public var stringValue: String? {
        if case .string(let text) = self { text } else { nil }
    }

    public var isNull: Bool { self == .null }

    /// A key as Docker's Go decoder compares it with a field's name: ASCII letters without case,
    /// and the four non-ASCII letters Go folds onto ASCII ones (`ſ` is `s`, the Kelvin sign `K` is
    /// `k`, `ı` and `İ` are `i`), so `"ſecurityOpt"` is caught as `SecurityOpt`.
    public static func foldedKey(_ key: String) -> String {
        var folded = String.UnicodeScalarView()
        for scalar in key.unicodeScalars {
            switch scalar.value {
            case 0x41...0x5A: folded.append(Unicode.Scalar(UInt8(scalar.value + 0x20)))
            case 0x17F: folded.append("s")
            case 0x212A: folded.append("k")
            case 0x130, 0x131: folded.append("i")
            default: folded.append(scalar)
            }
        }
        return String(folded)
    }
}

extension JSONValue: CustomStringConvertible {
    /// Compact JSON, keys sorted; only a non-finite number (never parsed, only built) has none.
    public var description: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "(not JSON)" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// No nil literal: `nil` must stay Optional's, or `cond ? value : nil` would quietly be JSON null.
extension JSONValue: ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

/// Docker reads a create body's keys without regard to case (`"privileged"` is `Privileged`), so
/// code that reads or replaces one of its fields must find every spelling of it.
extension Dictionary where Key == String, Value == JSONValue {
    /// Every member whose key Docker would read as `field`, in key order.
    public func members(matching field: String) -> [(key: String, value: JSONValue)] {
        let folded = JSONValue.foldedKey(field)
        return filter { JSONValue.foldedKey($0.key) == folded }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// The value of `field` when exactly one key spells it; nil when none does or several do.
    public func value(ofField field: String) -> JSONValue? {
        let found = members(matching: field)
        return found.count == 1 ? found[0].value : nil
    }

    /// Sets `field` under its exact name, removing every other spelling of it; nil removes it.
    public mutating func setField(_ field: String, to value: JSONValue?) {
        for (key, _) in members(matching: field) { removeValue(forKey: key) }
        if let value { self[field] = value }
    }

    /// Groups of keys that differ only in case (as Docker compares them), each sorted.
    public var keysDifferingOnlyInCase: [[String]] {
        Dictionary<String, [String]>(grouping: keys, by: JSONValue.foldedKey).values
            .filter { $0.count > 1 }.map { $0.sorted() }.sorted { $0[0] < $1[0] }
    }
}
