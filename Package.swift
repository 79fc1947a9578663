// swift-tools-version:6.0
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let cryptoExtras = Target.Dependency.product(name: "_CryptoExtras", package: "swift-crypto")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

/// Release executables are linked by lld with packed relative relocations (DT_RELR, glibc ≥ 2.36),
/// which shrink a position-independent binary's relocations from megabytes to kilobytes, and
/// without exporting every symbol (the static Swift runtime asks for that; nothing here looks its
/// own symbols up). Each process then reads, and keeps resident, several MB less at start.
let releaseLinking: [LinkerSetting] = [
    .unsafeFlags(
        ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"],
        .when(platforms: [.linux], configuration: .release)
    ),
]

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
        /// The daemons' configuration files (docker_server.xml, docker_user.xml), read with line numbers
        /// through FoundationXML. Apart from BerthCore so that `berth` links no XML parser.
        .target(name: "BerthConfig", dependencies: ["BerthCore", "BerthCLI", argumentParser]),
        /// The HTTP serving both daemons share: signed requests, bounded bodies, one-line JSON errors, /metrics.
        .target(name: "BerthServer", dependencies: ["BerthCore", hummingbird, logging, prometheus, .product(name: "NIOCore", package: "swift-nio")]),
        /// What the three command-line tools share: one-line errors, tables, JSON output.
        .target(name: "BerthCLI", dependencies: ["BerthCore", argumentParser]),
        .executableTarget(name: "Agent", dependencies: ["EngineAPI", "BerthCore", "BerthConfig", "BerthServer", "BerthCLI", argumentParser, hummingbird, logging, prometheus], linkerSettings: releaseLinking),
        .executableTarget(name: "Manager", dependencies: ["EngineAPI", "BerthCore", "BerthConfig", "BerthServer", "BerthCLI", argumentParser, hummingbird, logging, prometheus], linkerSettings: releaseLinking),
        .executableTarget(name: "Client", dependencies: ["EngineAPI", "BerthCore", "BerthCLI", "UnitProtocol", argumentParser], linkerSettings: releaseLinking),
        /// The call protocol of `berth call` and `berth-unit`, free of Foundation.
        .target(name: "UnitProtocol"),
        /// `berth-unit`: small, static, no Foundation beyond FoundationEssentials.
        .executableTarget(name: "Unit", dependencies: [
            "UnitProtocol",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], linkerSettings: releaseLinking),
        .executableTarget(name: "Bench", dependencies: ["EngineAPI", "BerthCore", "BerthConfig", "UnitProtocol", argumentParser], path: "bench/Sources"),
        .testTarget(name: "EngineAPITests", dependencies: ["EngineAPI"]),
        .testTarget(name: "BerthCoreTests", dependencies: ["BerthCore", "BerthConfig"]),
        .testTarget(name: "UnitTests", dependencies: ["UnitProtocol"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "BerthCore", "BerthConfig", "EngineAPI"]),
        .testTarget(name: "ClientTests", dependencies: ["Client", "BerthCore", "UnitProtocol"]),
        .testTarget(name: "IntegrationTests", dependencies: ["EngineAPI", "BerthCore"]),
    ]
)
