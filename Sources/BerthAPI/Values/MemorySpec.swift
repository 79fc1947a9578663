#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A user's `<Memory>` value, `m1[,m2]`: the container's memory limit and the Java new-generation
/// size of the payload (`-Xmn`), each a whole number with a `k`, `m` or `g` unit.
///
/// Only whole numbers with a unit are accepted because Docker and the JVM read the same text:
/// `1.5g` means nothing to `-Xmx`, and a bare `500` would be 500 bytes to Docker.
public struct MemorySpec: Sendable, Equatable, Codable {
    /// m1, the container's memory limit.
    public var limitBytes: Int64
    /// m2; half of m1 (rounded down to whole kilobytes) when not written.
    public var newSizeBytes: Int64
    /// The value as written in the file, e.g. `500m` or `1g,256m`.
    public var text: String

    /// The smallest limit the esProc multi-tenant design allows; below it neither Docker nor the
    /// JVM start reliably.
    public static let minimumLimitBytes: Int64 = 4 * 1024 * 1024

    public init(parsing text: String) throws(ConfigError) {
        func problem(_ reason: String) -> ConfigError {
            ConfigError("memory \"\(text)\": \(reason)")
        }
        let written = text.trimmed
        guard !written.isEmpty else {
            throw problem("empty; write m1[,m2] with k, m or g, e.g. 500m or 1g,256m")
        }
        let parts = written.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmed }
        guard parts.count <= 2 else {
            throw problem("expected m1[,m2] (a limit and an optional new-generation size), e.g. 1g,256m")
        }
        guard !parts[0].isEmpty else {
            throw problem("the limit before the comma is missing; write m1[,m2], e.g. 1g,256m")
        }
        guard parts.count == 1 || !parts[1].isEmpty else {
            throw problem("nothing after the comma; write m1,m2 (e.g. 1g,256m) or leave the comma out")
        }
        let limit: Size
        do throws(SizeError) {
            limit = try Size(parsing: parts[0])
        } catch {
            throw problem(error.reason)
        }
        guard limit.bytes >= MemorySpec.minimumLimitBytes else {
            throw problem("the limit must be at least 4m")
        }
        let newSize: Size
        if parts.count == 2 {
            do throws(SizeError) {
                newSize = try Size(parsing: parts[1])
            } catch {
                throw problem("new-generation size: \(error.reason)")
            }
            guard newSize.bytes > 0 else {
                throw problem("the new-generation size must be more than 0")
            }
            guard newSize.bytes <= limit.bytes else {
                throw problem("the new-generation size \(newSize) is larger than the limit \(limit)")
            }
        } else {
            newSize = Size(wholeKilobytesOf: limit.bytes / 2)
        }
        self.limitBytes = limit.bytes
        self.newSizeBytes = newSize.bytes
        self.text = written
        self.dockerMemory = limit.description
        self.javaNewSize = newSize.description
    }

    /// m1 as Docker's `--memory` and Java's `-Xmx` take it, e.g. `500m`.
    public private(set) var dockerMemory: String
    /// m2 as Java's `-Xmn` takes it, e.g. `250m`.
    public private(set) var javaNewSize: String

    /// Encoded as the text the file holds, so a decoded value is validated like a parsed one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do throws(ConfigError) {
            self = try MemorySpec(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

/// Why one size of a `<Memory>` value cannot be read.
private struct SizeError: Error {
    var reason: String
}

/// One whole number with its unit, e.g. `500m`.
private struct Size: CustomStringConvertible {
    var amount: Int64
    var unit: Character
    var bytes: Int64

    private static let multipliers: [Character: Int64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]

    init(parsing part: String) throws(SizeError) {
        let digits = part.prefix { $0.isASCII && $0.isNumber }
        let suffix = part.dropFirst(digits.count)
        if digits.isEmpty {
            if part.first == "-" {
                throw SizeError(reason: "must be a positive whole number with k, m or g (e.g. 500m)")
            }
            if part.first == "." || part.first == "," {
                throw SizeError(reason: Size.wholeNumberAdvice(for: part))
            }
            throw SizeError(reason: "missing number; write a whole number with k, m or g (e.g. 500m)")
        }
        if suffix.first == "." {
            throw SizeError(reason: Size.wholeNumberAdvice(for: part))
        }
        guard !suffix.isEmpty else {
            throw SizeError(reason: "missing unit; write \(digits)m for megabytes (or use k or g)")
        }
        guard suffix.count == 1, let unit = suffix.first?.lowercased().first,
              let multiplier = Size.multipliers[unit] else {
            throw SizeError(reason: "unknown unit \"\(suffix)\"; use k, m or g (e.g. 500m)")
        }
        guard let amount = Int64(digits) else {
            throw SizeError(reason: "too large")
        }
        let (bytes, overflow) = amount.multipliedReportingOverflow(by: multiplier)
        guard !overflow else {
            throw SizeError(reason: "too large")
        }
        self.amount = amount
        self.unit = unit
        self.bytes = bytes
    }

    /// The size in the largest unit that holds it exactly; anything below a kilobyte is dropped
    /// because neither Docker nor Java take sizes smaller than that.
    init(wholeKilobytesOf bytes: Int64) {
        let kilobytes = bytes >> 10
        if kilobytes % (1 << 20) == 0 && kilobytes > 0 {
            self.init(amount: kilobytes >> 20, unit: "g")
        } else if kilobytes % (1 << 10) == 0 && kilobytes > 0 {
            self.init(amount: kilobytes >> 10, unit: "m")
        } else {
            self.init(amount: kilobytes, unit: "k")
        }
    }

    private init(amount: Int64, unit: Character) {
        self.amount = amount
        self.unit = unit
        self.bytes = amount * Size.multipliers[unit]!
    }

    var description: String { "\(amount)\(unit)" }

    /// For `1.5g` the advice names the exact equivalent (`1536m`), so the fix can be copied.
    private static func wholeNumberAdvice(for part: String) -> String {
        let example = exactSmallerUnit(for: part) ?? "500m"
        return "use a whole number with k, m or g (e.g. \(example))"
    }

    private static func exactSmallerUnit(for part: String) -> String? {
        guard let unit = part.last?.lowercased().first,
              let smaller: Character = unit == "g" ? "m" : unit == "m" ? "k" : nil else { return nil }
        // "1.5" as whole and fraction digits; a fraction of up to 12 digits times 1024 fits an Int64.
        let number = part.dropLast().split(separator: ".", omittingEmptySubsequences: false)
        guard number.count == 2, number[0].count + number[1].count > 0, number[1].count <= 12,
              number.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let whole = Int64(number[0].isEmpty ? "0" : number[0]),
              let fraction = Int64(number[1].isEmpty ? "0" : number[1]) else { return nil }
        let scale = number[1].reduce(Int64(1)) { scale, _ in scale * 10 }
        let (wholeScaled, overflow) = whole.multipliedReportingOverflow(by: 1024)
        guard !overflow, (fraction * 1024) % scale == 0 else { return nil }
        let (amount, sumOverflow) = wholeScaled.addingReportingOverflow(fraction * 1024 / scale)
        guard !sumOverflow, amount > 0 else { return nil }
        return "\(amount)\(smaller)"
    }
}
