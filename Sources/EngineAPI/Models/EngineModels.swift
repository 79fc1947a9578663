import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// MARK: - Exec

/// The body of `POST /containers/{id}/exec`.
public struct ExecConfig: Codable, Sendable {
    public var cmd: [String]
    public var env: [String]?
    public var user: String?
    public var workingDir: String?
    public var tty: Bool
    public var attachStdin: Bool
    public var attachStdout: Bool
    public var attachStderr: Bool

    public init(cmd: [String], env: [String]? = nil, user: String? = nil, workingDir: String? = nil, tty: Bool = false) {
        self.cmd = cmd
        self.env = env
        self.user = user
        self.workingDir = workingDir
        self.tty = tty
        self.attachStdin = false
        self.attachStdout = true
        self.attachStderr = true
    }
}

struct IDResponse: Codable, Sendable {
    var id: String
}

/// `GET /exec/{id}/json`.
public struct ExecInspect: Codable, Sendable {
    public var id: String
    public var running: Bool
    public var exitCode: Int?
    public var pid: Int?
    public var containerID: String?

    enum CodingKeys: String, CodingKey {
        case id = "iD"
        case running, exitCode, pid, containerID
    }
}

// MARK: - Images

/// One row of `GET /images/json`.
public struct ImageSummary: Codable, Sendable {
    public var id: String
    public var repoTags: [String]?
    public var created: Int64?
    public var size: Int64?
    public var labels: [String: String]?
}

/// `GET /images/{name}/json`.
public struct ImageInspect: Codable, Sendable {
    public struct Config: Codable, Sendable {
        public var cmd: [String]?
        public var entrypoint: [String]?
        public var env: [String]?
        public var user: String?
        public var workingDir: String?
        public var exposedPorts: [String: EmptyObject]?
        public var labels: [String: String]?
    }

    public var id: String
    public var repoTags: [String]?
    public var created: String?
    public var size: Int64?
    public var architecture: String?
    public var os: String?
    public var config: Config?
}

// MARK: - Networks

/// `GET /networks/{id}` and rows of `GET /networks`.
public struct Network: Codable, Sendable {
    public struct Endpoint: Codable, Sendable {
        public var name: String?
        public var endpointID: String?
        public var iPv4Address: String?
    }

    public var name: String
    public var id: String
    public var driver: String?
    public var scope: String?
    public var `internal`: Bool?
    public var labels: [String: String]?
    public var options: [String: String]?
    public var containers: [String: Endpoint]?
}

/// The body of `POST /networks/create`.
public struct NetworkCreate: Codable, Sendable {
    public var name: String
    public var driver: String
    public var `internal`: Bool
    public var checkDuplicate: Bool
    public var labels: [String: String]?
    public var options: [String: String]?

    public init(name: String, driver: String = "bridge", internal: Bool = false, labels: [String: String]? = nil, options: [String: String]? = nil) {
        self.name = name
        self.driver = driver
        self.internal = `internal`
        self.checkDuplicate = true
        self.labels = labels
        self.options = options
    }
}

// MARK: - System

/// `GET /version`.
public struct EngineVersion: Codable, Sendable {
    public var version: String
    public var apiVersion: String
    public var minAPIVersion: String?
    public var os: String?
    public var arch: String?
    public var kernelVersion: String?
    public var goVersion: String?
}

/// `GET /info`, the fields Berth reads.
public struct EngineInfo: Codable, Sendable {
    public var id: String?
    public var name: String?
    public var serverVersion: String?
    public var containers: Int?
    public var containersRunning: Int?
    public var images: Int?
    public var memTotal: Int64?
    public var nCPU: Int?
    public var cgroupVersion: String?
    public var cgroupDriver: String?
    public var operatingSystem: String?
    /// `name=seccomp,profile=builtin`, `name=userns`, …
    public var securityOptions: [String]?

    /// The engine runs containers in a user namespace (`userns-remap`): root in a container is an
    /// unprivileged user on the host.
    public var remapsUsers: Bool {
        securityOptions?.contains { $0.split(separator: ",").contains("name=userns") } ?? false
    }

    enum CodingKeys: String, CodingKey {
        case id = "iD"
        case name, serverVersion, containers, containersRunning, images, memTotal, cgroupVersion, cgroupDriver, operatingSystem
        case securityOptions
        case nCPU = "nCPU"
    }
}

/// One message of `GET /events`.
public struct EngineEvent: Codable, Sendable {
    public struct Actor: Codable, Sendable {
        public var id: String?
        public var attributes: [String: String]?

        enum CodingKeys: String, CodingKey {
            case id = "iD"
            case attributes
        }
    }

    public var type: String?
    public var action: String?
    public var actor: Actor?
    public var time: Int64?
    public var timeNano: Int64?
}
