import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An empty JSON object, as in `ExposedPorts: {"8281/tcp": {}}`.
public struct EmptyObject: Codable, Sendable, Equatable {
    public init() {}
}

/// The body of `POST /containers/create`.
public struct ContainerConfig: Codable, Sendable, Equatable {
    public var image: String?
    public var cmd: [String]?
    public var entrypoint: [String]?
    public var env: [String]?
    public var user: String?
    public var workingDir: String?
    public var labels: [String: String]?
    public var exposedPorts: [String: EmptyObject]?
    public var tty: Bool?
    public var openStdin: Bool?
    public var stopSignal: String?
    public var stopTimeout: Int?
    public var hostname: String?
    public var hostConfig: HostConfig?
    public var networkingConfig: NetworkingConfig?

    public init(
        image: String? = nil, cmd: [String]? = nil, entrypoint: [String]? = nil, env: [String]? = nil,
        user: String? = nil, workingDir: String? = nil, labels: [String: String]? = nil,
        exposedPorts: [String: EmptyObject]? = nil, tty: Bool? = nil, hostConfig: HostConfig? = nil
    ) {
        self.image = image
        self.cmd = cmd
        self.entrypoint = entrypoint
        self.env = env
        self.user = user
        self.workingDir = workingDir
        self.labels = labels
        self.exposedPorts = exposedPorts
        self.tty = tty
        self.hostConfig = hostConfig
    }
}

/// Where and how a container runs: limits, mounts, ports, network, security.
public struct HostConfig: Codable, Sendable, Equatable {
    public var memory: Int64?
    public var memorySwap: Int64?
    public var cpuShares: Int?
    public var pidsLimit: Int64?
    public var binds: [String]?
    public var portBindings: [String: [PortBinding]]?
    public var `init`: Bool?
    public var networkMode: String?
    public var securityOpt: [String]?
    public var capDrop: [String]?
    public var capAdd: [String]?
    public var restartPolicy: RestartPolicy?
    public var readonlyRootfs: Bool?
    public var autoRemove: Bool?

    public init(
        memory: Int64? = nil, memorySwap: Int64? = nil, cpuShares: Int? = nil, pidsLimit: Int64? = nil,
        binds: [String]? = nil, portBindings: [String: [PortBinding]]? = nil, init initProcess: Bool? = nil,
        networkMode: String? = nil, securityOpt: [String]? = nil, capDrop: [String]? = nil,
        restartPolicy: RestartPolicy? = nil, autoRemove: Bool? = nil
    ) {
        self.memory = memory
        self.memorySwap = memorySwap
        self.cpuShares = cpuShares
        self.pidsLimit = pidsLimit
        self.binds = binds
        self.portBindings = portBindings
        self.`init` = initProcess
        self.networkMode = networkMode
        self.securityOpt = securityOpt
        self.capDrop = capDrop
        self.restartPolicy = restartPolicy
        self.autoRemove = autoRemove
    }
}

public struct PortBinding: Codable, Sendable, Equatable {
    public var hostIp: String?
    public var hostPort: String?

    public init(hostIp: String?, hostPort: String?) {
        self.hostIp = hostIp
        self.hostPort = hostPort
    }
}

public struct RestartPolicy: Codable, Sendable, Equatable {
    public var name: String
    public var maximumRetryCount: Int?

    public init(name: String, maximumRetryCount: Int? = nil) {
        self.name = name
        self.maximumRetryCount = maximumRetryCount
    }

    public static let no = RestartPolicy(name: "no")
}

public struct NetworkingConfig: Codable, Sendable, Equatable {
    public var endpointsConfig: [String: EndpointSettings]?

    public init(endpointsConfig: [String: EndpointSettings]?) {
        self.endpointsConfig = endpointsConfig
    }
}

public struct EndpointSettings: Codable, Sendable, Equatable {
    public var networkID: String?
    public var endpointID: String?
    public var gateway: String?
    public var ipAddress: String?
    public var macAddress: String?
    public var aliases: [String]?

    enum CodingKeys: String, CodingKey {
        case networkID, endpointID, gateway, aliases, macAddress
        case ipAddress = "iPAddress"
    }

    public init(aliases: [String]? = nil) {
        self.aliases = aliases
    }
}

/// The answer to `POST /containers/create`.
public struct ContainerCreateResponse: Codable, Sendable {
    public var id: String
    public var warnings: [String]?
}

/// One row of `GET /containers/json`.
public struct ContainerSummary: Codable, Sendable {
    public var id: String
    public var names: [String]?
    public var image: String?
    public var imageID: String?
    public var command: String?
    public var created: Int64?
    public var state: String?
    public var status: String?
    public var labels: [String: String]?
    public var ports: [ContainerPort]?

    /// The name without Docker's leading slash.
    public var name: String? { names?.first.map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 } }
}

public struct ContainerPort: Codable, Sendable, Equatable {
    public var ip: String?
    public var privatePort: Int
    public var publicPort: Int?
    public var type: String

    enum CodingKeys: String, CodingKey {
        case ip = "iP"
        case privatePort, publicPort, type
    }
}

/// `GET /containers/{id}/json`.
public struct ContainerInspect: Codable, Sendable {
    public var id: String
    public var name: String
    public var created: String?
    public var path: String?
    public var args: [String]?
    public var state: ContainerState
    public var image: String?
    public var restartCount: Int?
    public var config: ContainerConfig
    public var hostConfig: HostConfig
    public var mounts: [MountPoint]?
    public var networkSettings: NetworkSettings?
}

public struct ContainerState: Codable, Sendable {
    public var status: String
    public var running: Bool
    public var paused: Bool?
    public var restarting: Bool?
    public var oomKilled: Bool?
    public var dead: Bool?
    public var pid: Int?
    public var exitCode: Int?
    public var error: String?
    public var startedAt: String?
    public var finishedAt: String?

    enum CodingKeys: String, CodingKey {
        case status, running, paused, restarting, dead, pid, exitCode, error, startedAt, finishedAt
        case oomKilled = "oOMKilled"
    }
}

public struct MountPoint: Codable, Sendable, Equatable {
    public var type: String?
    public var source: String?
    public var destination: String
    public var mode: String?
    public var rw: Bool?

    enum CodingKeys: String, CodingKey {
        case type, source, destination, mode
        case rw = "rW"
    }
}

public struct NetworkSettings: Codable, Sendable {
    public var networks: [String: EndpointSettings]?
    public var ports: [String: [PortBinding]?]?
}

/// `POST /containers/{id}/wait`.
public struct ContainerWaitResponse: Codable, Sendable {
    public struct WaitError: Codable, Sendable {
        public var message: String?
    }

    public var statusCode: Int
    public var error: WaitError?
}
