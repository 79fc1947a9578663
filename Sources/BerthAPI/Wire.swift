#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// What crosses the network between client, manager and agents. All bodies are JSON with
// camelCase keys; streams are JSON lines.

/// Docker labels on every unit container: the truth of what runs.
public enum UnitLabel {
    public static let user = "berth.user"
    public static let unit = "berth.unit"
    public static let session = "berth.session"
    public static let host = "berth.host"
}

// MARK: - Manager → agent

/// Start one unit container for a user and wait until its port serves.
public struct StartUnitRequest: Codable, Sendable {
    public var user: String
    public var session: String
    public var unit: HostPort
    public var memory: MemorySpec
    public var cpu: Int
    public var home: String
    /// `<Uid>`: the account the unit runs as; nil runs it as the home's owner.
    public var account: UnixAccount?
    /// Given to the unit's payload (`BERTH_UNIT_SECRET`): only the session's owner may call it.
    public var unitSecret: String

    public init(user: String, session: String, unit: HostPort, memory: MemorySpec, cpu: Int, home: String, account: UnixAccount? = nil, unitSecret: String) {
        self.user = user
        self.session = session
        self.unit = unit
        self.memory = memory
        self.cpu = cpu
        self.home = home
        self.account = account
        self.unitSecret = unitSecret
    }
}

/// One line of an agent's answer to `POST /v1/units/start?progress=1`: where the start waits,
/// then its outcome.
public struct StartUnitEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// Waiting for one of the host's start slots; `place` 1 is next.
        case queued
        /// Has a slot after waiting: the container is being created, started and waited for.
        case starting
        case ready
        case failed
    }

    public var kind: Kind
    /// With `queued`: the place in line, and how many starts the host runs at once.
    public var place: Int?
    public var slots: Int?
    /// With `ready`.
    public var unit: UnitStatus?
    /// With `failed`: the HTTP status the plain request would have answered, and the message.
    public var status: Int?
    public var error: String?

    public init(kind: Kind, place: Int? = nil, slots: Int? = nil, unit: UnitStatus? = nil, status: Int? = nil, error: String? = nil) {
        self.kind = kind
        self.place = place
        self.slots = slots
        self.unit = unit
        self.status = status
        self.error = error
    }
}

/// Remove a user's unit containers on one host: all of them, those of one session, or only some units.
public struct StopUnitsRequest: Codable, Sendable {
    public var user: String
    public var session: String?
    public var units: [HostPort]?
    /// Save each container's log into the home before removing it.
    public var saveLogs: Bool

    public init(user: String, session: String? = nil, units: [HostPort]? = nil, saveLogs: Bool = true) {
        self.user = user
        self.session = session
        self.units = units
        self.saveLogs = saveLogs
    }
}

public struct StopUnitsResponse: Codable, Sendable {
    public var removed: [HostPort]
    /// What the manager's audit should hear: a unit log saved outside its home, and why.
    public var notes: [String]?

    public init(removed: [HostPort], notes: [String]? = nil) {
        self.removed = removed
        self.notes = notes
    }
}

/// A unit container as its host's engine reports it.
public struct UnitStatus: Codable, Sendable, Equatable {
    public var unit: HostPort
    public var user: String
    public var session: String
    public var state: UnitState
    public var container: String?
    public var detail: String?
    /// Of the key the unit serves TLS with, made for this session (on hosts with TLS).
    public var fingerprint: KeyFingerprint?
    /// A running unit's use when asked for: its share of the host's CPU since the last sample
    /// (100 is one whole core), its memory without the page cache, and its memory limit.
    public var cpuPercent: Double?
    public var memoryBytes: UInt64?
    public var memoryLimitBytes: UInt64?

    enum CodingKeys: String, CodingKey {
        case unit, user, session, state, container, detail, fingerprint
        case cpuPercent = "cpu_percent"
        case memoryBytes = "memory_bytes"
        case memoryLimitBytes = "memory_limit_bytes"
    }

    public init(
        unit: HostPort, user: String, session: String, state: UnitState, container: String? = nil, detail: String? = nil,
        fingerprint: KeyFingerprint? = nil
    ) {
        self.fingerprint = fingerprint
        self.unit = unit
        self.user = user
        self.session = session
        self.state = state
        self.container = container
        self.detail = detail
    }
}

/// A unit's state: Docker's state of its container (`running`, `exited`, `created`, …), or
/// Berth's own `missing` (no container) and `unknown` (its host did not answer). Open, since an
/// engine may name states this build does not know.
public struct UnitState: RawRepresentable, Codable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public static let running: UnitState = "running"
    public static let created: UnitState = "created"
    public static let exited: UnitState = "exited"
    public static let missing: UnitState = "missing"
    public static let unknown: UnitState = "unknown"

    public let rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public init(stringLiteral value: String) {
        rawValue = value
    }

    public var description: String { rawValue }
}

public struct UnitList: Codable, Sendable {
    public var units: [UnitStatus]

    public init(units: [UnitStatus]) {
        self.units = units
    }
}

/// Run a command in a unit container (non-interactive).
public struct ExecRequest: Codable, Sendable {
    public var user: String
    public var unit: HostPort
    public var command: [String]
    /// Only in an interactive exec's opening frame.
    public var terminal: ExecTerminal?

    public init(user: String, unit: HostPort, command: [String], terminal: ExecTerminal? = nil) {
        self.user = user
        self.unit = unit
        self.command = command
        self.terminal = terminal
    }
}

/// Every error body: one line a person can act on.
public struct ErrorBody: Codable, Sendable {
    public var error: String

    public init(error: String) {
        self.error = error
    }
}

/// An agent's answer to `GET /v1/health`: its engine answers, at this API version.
public struct AgentHealth: Codable, Sendable {
    public var host: String
    public var engine: String
    public var api: String

    public init(host: String, engine: String, api: String) {
        self.host = host
        self.engine = engine
        self.api = api
    }
}

// MARK: - Client → manager

public struct LoginRequest: Codable, Sendable {
    public var user: String
    public var password: String
    public var force: Bool

    public init(user: String, password: String, force: Bool) {
        self.user = user
        self.password = password
        self.force = force
    }
}

/// One line of the login stream: per-unit progress, then `done` or `failed`.
public struct LoginEvent: Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        case unit
        case notice
        case done
        case failed
    }

    public var kind: Kind
    public var unit: HostPort?
    /// For `unit`: where the unit's start is.
    public var state: UnitProgress?
    public var message: String?
    public var token: String?
    public var units: [HostPort]?
    /// With `done`: what `berth call` presents to the units.
    public var unitSecret: String?
    /// With `done`: the key each unit serves TLS with, which `berth call` accepts and no other.
    public var unitKeys: [UnitKey]?

    public init(
        kind: Kind, unit: HostPort? = nil, state: UnitProgress? = nil, message: String? = nil, token: String? = nil,
        units: [HostPort]? = nil, unitSecret: String? = nil, unitKeys: [UnitKey]? = nil
    ) {
        self.unitKeys = unitKeys
        self.unitSecret = unitSecret
        self.kind = kind
        self.unit = unit
        self.state = state
        self.message = message
        self.token = token
        self.units = units
    }
}

/// The key a unit serves TLS with in this session.
public struct UnitKey: Codable, Sendable, Equatable {
    public var unit: HostPort
    public var fingerprint: KeyFingerprint

    public init(unit: HostPort, fingerprint: KeyFingerprint) {
        self.unit = unit
        self.fingerprint = fingerprint
    }
}

/// Where one unit of a login is, as its progress lines say it.
public enum UnitProgress: String, Codable, Sendable {
    /// Waiting for one of its host's start slots (the message says the place in line).
    case queued
    case starting
    case ready
    case failed
    /// Removed again: the login failed elsewhere.
    case removed
}

public struct StatusResponse: Codable, Sendable {
    public var user: String
    public var since: Date
    public var from: String
    public var units: [UnitStatus]

    public init(user: String, since: Date, from: String, units: [UnitStatus]) {
        self.user = user
        self.since = since
        self.from = from
        self.units = units
    }
}

public struct ClientExecRequest: Codable, Sendable {
    public var unit: HostPort
    public var command: [String]
    /// Only in an interactive exec's opening frame (see `ExecInput`).
    public var terminal: ExecTerminal?

    public init(unit: HostPort, command: [String], terminal: ExecTerminal? = nil) {
        self.unit = unit
        self.command = command
        self.terminal = terminal
    }
}

/// How an interactive exec runs: with stdin always, with a terminal of this size and type if
/// `tty` (the process then has one console stream, as `docker exec -it` gives).
public struct ExecTerminal: Codable, Sendable, Equatable {
    public var tty: Bool
    public var rows: Int?
    public var columns: Int?
    /// `TERM` for the process: the client's, when it has a terminal.
    public var term: String?

    public init(tty: Bool, rows: Int? = nil, columns: Int? = nil, term: String? = nil) {
        self.tty = tty
        self.rows = rows
        self.columns = columns
        self.term = term
    }
}

/// The request body of an interactive exec (`Content-Type` `OutputStream.contentType`), in the
/// framing of its answer: first the request as JSON (kind 0; the frame a signature covers), then
/// stdin (kind 1), the terminal's size (kind 4: rows and columns as UInt16 big-endian), and the
/// end of stdin (kind 5, empty).
public enum ExecInput: Sendable, Equatable {
    case request(Data)
    case stdin(Data)
    case resize(rows: Int, columns: Int)
    case endOfInput

    /// More than a keystroke or a read of a pipe ever needs, and little enough to hold.
    public static let maxFrame = 1 << 20

    public var encoded: Data {
        let (kind, payload): (UInt8, Data) = switch self {
        case .request(let json): (0, json)
        case .stdin(let bytes): (1, bytes)
        case .resize(let rows, let columns):
            (4, Data([UInt8(clamping: rows >> 8), UInt8(truncatingIfNeeded: rows), UInt8(clamping: columns >> 8), UInt8(truncatingIfNeeded: columns)]))
        case .endOfInput: (5, Data())
        }
        let size = UInt32(payload.count)
        return Data([kind, 0, 0, 0, UInt8(size >> 24), UInt8((size >> 16) & 0xFF), UInt8((size >> 8) & 0xFF), UInt8(size & 0xFF)]) + payload
    }
}

/// Reassembles `ExecInput` frames from a body arriving in any pieces.
public struct ExecInputDecoder: Sendable {
    private var buffer = Data()
    /// The most a request frame (kind 0) may hold: the route's cap on a body, not a stdin frame's.
    public let maxRequestFrame: Int

    public init(maxRequestFrame: Int = ExecInput.maxFrame) {
        self.maxRequestFrame = maxRequestFrame
    }

    /// The frames `bytes` completes; throws on a frame that is too large or of an unknown kind.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(RequestBodyError) -> [ExecInput] {
        buffer.append(contentsOf: bytes)
        var frames: [ExecInput] = []
        var offset = buffer.startIndex
        while buffer.endIndex - offset >= 8 {
            let size = buffer[(offset + 4)..<(offset + 8)].reduce(0) { $0 << 8 | Int($1) }
            guard size <= ExecInput.maxFrame else { throw RequestBodyError("an exec input frame of \(size) bytes is over the \(ExecInput.maxFrame >> 20) MiB a frame may hold") }
            guard buffer[offset] != 0 || size <= maxRequestFrame else {
                throw RequestBodyError("an exec's request frame of \(size) bytes is over the \(maxRequestFrame >> 10) KB a request may hold")
            }
            guard buffer.endIndex - offset - 8 >= size else { break }
            let payload = Data(buffer[(offset + 8)..<(offset + 8 + size)])
            switch buffer[offset] {
            case 0: frames.append(.request(payload))
            case 1: frames.append(.stdin(payload))
            case 4 where size == 4:
                frames.append(.resize(rows: Int(payload[payload.startIndex]) << 8 | Int(payload[payload.startIndex + 1]),
                                      columns: Int(payload[payload.startIndex + 2]) << 8 | Int(payload[payload.startIndex + 3])))
            case 5: frames.append(.endOfInput)
            default: throw RequestBodyError("an exec input frame of unknown kind \(buffer[offset]) (or wrong size \(size))")
            }
            offset += 8 + size
        }
        buffer.removeSubrange(buffer.startIndex..<offset)
        return frames
    }
}

/// What `berth cp` into a unit wrote: files, folders and links.
public struct CopyResult: Codable, Sendable, Equatable {
    public var written: Int

    public init(written: Int) {
        self.written = written
    }
}

/// A session as `berth-manager sessions` shows it.
public struct SessionSummary: Codable, Sendable {
    public var user: String
    public var since: Date
    public var lastSeen: Date
    public var from: String
    public var units: [HostPort]

    public init(user: String, since: Date, lastSeen: Date, from: String, units: [HostPort]) {
        self.user = user
        self.since = since
        self.lastSeen = lastSeen
        self.from = from
        self.units = units
    }
}

/// An administrator's request to end a user's session, removing its units.
public struct EndSessionRequest: Codable, Sendable {
    public var user: String

    public init(user: String) {
        self.user = user
    }
}

/// JSON as Berth writes it on the wire and on disk.
public enum BerthJSON {
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601WithoutICU
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    public static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601WithoutICU
        return decoder
    }()
}

/// A request body that is not the JSON a route expects, in one line that names what is wrong.
public struct RequestBodyError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String

    /// `description` may quote the body's values; it is kept to one line of bounded length.
    public init(_ description: String) {
        self.description = description.asOneLine()
    }
}

extension BerthJSON {
    /// Decodes a request body as `T`; every failure is a `RequestBodyError` naming the field at fault.
    public static func decodeRequest<T: Decodable>(_ type: T.Type, from body: Data) throws(RequestBodyError) -> T {
        do {
            return try decoder.decode(type, from: body)
        } catch let DecodingError.keyNotFound(key, _) {
            throw RequestBodyError("request body is missing \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw RequestBodyError("request body field \"\(fieldPath(context))\" has the wrong type")
        } catch let DecodingError.dataCorrupted(context) {
            let field = fieldPath(context)
            throw RequestBodyError(field.isEmpty ? "request body is not valid JSON" : "request body field \"\(field)\" is invalid: \(context.debugDescription)")
        } catch {
            throw RequestBodyError("request body is not the expected JSON")
        }
    }

    private static func fieldPath(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }
}
