/// One route of a Berth daemon: its method and path, with the types of its request body and of
/// its answer, so the router that serves it and the client that calls it cannot disagree.
public struct Route<Body, Answer>: Sendable, CustomStringConvertible {
    public enum Method: String, Sendable {
        case get = "GET"
        case post = "POST"
        case put = "PUT"
    }

    public let method: Method
    public let path: String
    /// Query parameters every call of this route sends (its answer's shape depends on them).
    public let query: [(name: String, value: String)]
    /// The largest body the route takes, in bytes, sized for what it carries; a larger one is a
    /// 413 and the connection is closed.
    public let maxBody: Int

    public init(_ method: Method, _ path: String, query: [(name: String, value: String)] = [], maxBody: Int? = nil) {
        self.method = method
        self.path = path
        self.query = query
        self.maxBody = maxBody ?? (Body.self == NoBody.self ? 1024 : 64 * 1024)
    }

    public var description: String { "\(method.rawValue) \(path)" }
}

/// The body of a route that takes none.
public struct NoBody: Codable, Sendable {
    public init() {}
}

/// An answer of JSON lines, one `Event` each, written as they happen.
public enum JSONLines<Event> {}

/// An answer in the Docker engine's multiplexed stream format: a unit's log.
public enum MultiplexedStream {
    public static let contentType = "application/vnd.docker.multiplexed-stream"
}

/// An answer of frames as a command's output comes: Docker's framing (`[kind, 0, 0, 0,
/// size:UInt32 BE]` then `size` bytes; kind 1 stdout, 2 stderr) and a last frame of kind 3 whose
/// payload is the exit status in decimal. `berth-unit` answers calls the same way.
public enum OutputStream {
    public static let contentType = "application/vnd.berth.frames"
}

/// A tar stream, as `berth cp` moves files: sent as it is read, unpacked as it comes.
public enum TarStream {
    public static let contentType = "application/x-tar"
}

/// Text for Prometheus: counts only, never names, since it is served without authentication.
public enum PrometheusText {}

/// The manager's API: `login` for anyone with a password, the user's routes for a session's
/// bearer token, `admin` for requests signed with the cluster secret, `metrics` for Prometheus.
public enum ManagerRoutes {
    /// A name of at most 64 bytes and a password.
    public static let login = Route<LoginRequest, JSONLines<LoginEvent>>(.post, "/v1/login", maxBody: 8 * 1024)
    public static let logout = Route<NoBody, StopUnitsResponse>(.post, "/v1/logout")
    /// Each unit's state and, for a running one, its CPU and memory use (up to two seconds for
    /// the engine to sample it); query `usage=0` for the state alone, at once.
    public static let status = Route<NoBody, StatusResponse>(.get, "/v1/status")
    /// A command line, which Linux caps at 2 MiB; a quarter of that is plenty.
    public static let exec = Route<ClientExecRequest, OutputStream>(.post, "/v1/exec", maxBody: 512 * 1024)
    /// Query: `unit`, and optionally `follow`, `since`, `until`, `tail`, `timestamps`.
    public static let logs = Route<NoBody, MultiplexedStream>(.get, "/v1/logs")
    /// `berth cp` into a unit. Query: `unit`, `path` (in /app); the body is a tar stream.
    public static let copyIn = Route<TarStream, CopyResult>(.put, "/v1/files")
    /// `berth cp` out of a unit. Query: `unit`, `path` (in /app); the answer is a tar stream.
    public static let copyOut = Route<NoBody, TarStream>(.get, "/v1/files")
    public static let sessions = Route<NoBody, [SessionSummary]>(.get, "/v1/admin/sessions")
    public static let endSession = Route<EndSessionRequest, StopUnitsResponse>(.post, "/v1/admin/sessions/end")
    public static let metrics = Route<NoBody, PrometheusText>(.get, "/metrics")
    /// Where the cluster secret is required.
    public static let adminPrefix = "/v1/admin/"

    /// The options `logs` passes on to the unit's agent.
    public static let logOptions = ["follow", "since", "until", "tail", "timestamps"]
}

/// An agent's API, for the manager only: every route but `metrics` needs a signed request.
public enum AgentRoutes {
    public static let health = Route<NoBody, AgentHealth>(.get, "/v1/health")
    /// Answers once the unit serves (or has failed).
    public static let startUnit = Route<StartUnitRequest, UnitStatus>(.post, "/v1/units/start")
    /// The same start, answered as it goes: its place in line while it waits for a slot, then
    /// its outcome.
    public static let startUnitWithProgress = Route<StartUnitRequest, JSONLines<StartUnitEvent>>(
        .post, "/v1/units/start", query: [(name: "progress", value: "1")])
    public static let stopUnits = Route<StopUnitsRequest, StopUnitsResponse>(.post, "/v1/units/stop")
    /// Query: `user`, to list only theirs; `usage=1` for each running unit's CPU and memory.
    public static let units = Route<NoBody, UnitList>(.get, "/v1/units")
    /// Query: `user`, `unit`, and the options of `ManagerRoutes.logs`.
    public static let unitLogs = Route<NoBody, MultiplexedStream>(.get, "/v1/units/logs")
    public static let exec = Route<ExecRequest, OutputStream>(.post, "/v1/units/exec", maxBody: 512 * 1024)
    /// Query: `user`, `home`, `path`, and `uid` and `gid` when the user's units run as an account
    /// of their own; the body is a tar stream (its query is what the signature covers).
    public static let copyIn = Route<TarStream, CopyResult>(.put, "/v1/units/files")
    /// Query: `user`, `home`, `path`; the answer is a tar stream.
    public static let copyOut = Route<NoBody, TarStream>(.get, "/v1/units/files")
    public static let metrics = Route<NoBody, PrometheusText>(.get, "/metrics")
}
