// swift-tools-version:6.0
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let cryptoExtras = Target.Dependency.product(name: "_CryptoExtras", package: "swift-crypto")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

let package = Package(
    name: "Berth",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "berth-agent", targets: ["Agent"]),
        .executable(name: "berth-manager", targets: ["Manager"]),
        .executable(name: "berth", targets: ["Client"]),
        .executable(name: "berth-unit", targets: ["Unit"]),
        .executable(name: "berth-bench", targets: ["Bench"]),
        .library(name: "EngineAPI", targets: ["EngineAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "EngineAPI", dependencies: ["CCurl"]),
        /// What the executables share: configuration, wire types, request signing, passwords.
        .target(name: "BerthCore", dependencies: ["EngineAPI", crypto, cryptoExtras]),
        /// The HTTP serving both daemons share: signed requests, bounded bodies, one-line JSON errors, /metrics.
        .target(name: "BerthServer", dependencies: ["BerthCore", hummingbird, logging, prometheus, .product(name: "NIOCore", package: "swift-nio")]),
        /// What the three command-line tools share: one-line errors, tables, JSON output.
        .target(name: "BerthCLI", dependencies: ["BerthCore", argumentParser]),
        .executableTarget(name: "Agent", dependencies: ["EngineAPI", "BerthCore", "BerthServer", "BerthCLI", argumentParser, hummingbird, logging, prometheus]),
        .executableTarget(name: "Manager", dependencies: ["EngineAPI", "BerthCore", "BerthServer", "BerthCLI", argumentParser, hummingbird, logging, prometheus]),
        .executableTarget(name: "Client", dependencies: ["EngineAPI", "BerthCore", "BerthCLI", "UnitProtocol", argumentParser]),
        /// The call protocol of `berth call` and `berth-unit`, free of Foundation.
        .target(name: "UnitProtocol"),
        /// `berth-unit`: small, static, no Foundation beyond FoundationEssentials.
        .executableTarget(name: "Unit", dependencies: [
            "UnitProtocol",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "Bench", dependencies: ["EngineAPI", "BerthCore", "UnitProtocol", argumentParser], path: "bench/Sources"),
        .testTarget(name: "EngineAPITests", dependencies: ["EngineAPI"]),
        .testTarget(name: "BerthCoreTests", dependencies: ["BerthCore"]),
        .testTarget(name: "UnitTests", dependencies: ["UnitProtocol"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "BerthCore", "EngineAPI"]),
        .testTarget(name: "ClientTests", dependencies: ["Client", "BerthCore", "UnitProtocol"]),
        .testTarget(name: "IntegrationTests", dependencies: ["EngineAPI", "BerthCore"]),
    ]
)
