// swift-tools-version:6.1
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let cryptoExtras = Target.Dependency.product(name: "_CryptoExtras", package: "swift-crypto")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let x509 = Target.Dependency.product(name: "X509", package: "swift-certificates")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")

#if canImport(Glibc)
import Glibc

/// Packed relative relocations (DT_RELR) shrink a binary's relocations from megabytes to
/// kilobytes, which each process reads and keeps at start; they need glibc 2.36 or later where the
/// binaries run, so they are used when the building machine has it.
let packedRelocations: [String] = {
    var text = [CChar](repeating: 0, count: 64)
    guard confstr(Int32(_CS_GNU_LIBC_VERSION), &text, text.count) > 0 else { return [] }
    // "glibc 2.36"
    let words = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
    let version = words.last?.split(separator: ".").compactMap { Int($0) } ?? []
    guard version.count >= 2, (version[0], version[1]) >= (2, 36) else { return [] }
    return ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]
}()

/// The functions a program runs in `make demo` (Resources/link-order/PROGRAM.txt, written by
/// scripts/link-order.sh) placed side by side at the front of its code: the kernel maps 64 kB
/// around each page a process touches, so code that runs strewn among code that never does keeps
/// far more of the binary resident than is used. Needs functions in sections of their own, which
/// scripts/release-build.sh asks the compilers for.
func linkOrder(_ program: String) -> [String] {
    let file = "\(Context.packageDirectory)/Resources/link-order/\(program).txt"
    return ["-Xlinker", "--symbol-ordering-file=\(file)", "-Xlinker", "--no-warn-symbol-ordering"]
}
#else
let packedRelocations: [String] = []
func linkOrder(_ program: String) -> [String] { [] }
#endif

/// Release executables are linked by lld and export no symbols (the static Swift runtime asks for
/// every one to be exported; nothing here looks its own symbols up), so the dynamic loader has
/// less to read at every start. `program` names the link order, where it has one.
func releaseLinking(_ program: String? = nil) -> [LinkerSetting] {
    [
        .unsafeFlags(
            ["-use-ld=lld", "-Xlinker", "--no-export-dynamic"] + packedRelocations + (program.map(linkOrder) ?? []),
            .when(platforms: [.linux], configuration: .release)),
    ]
}

/// `berth` runs once per command, so its start is part of every command's time: linked whole, C
/// library included, as a position-independent executable (addresses still randomised), it
/// starts without the dynamic loader, which spent about 2 ms of each login binding libc, libm,
/// libstdc++ and libgcc_s. The C library's fixes then reach it when it is built again, as the Swift
/// runtime's and BoringSSL's already do. The daemons run for months and stay as they are.
let staticClient: [LinkerSetting] = [
    .unsafeFlags(["-static-executable", "-Xclang-linker", "-static-pie"], .when(platforms: [.linux], configuration: .release)),
]

/// The modules linked into the daemons import FoundationEssentials, never the whole of Foundation,
/// which would bring ICU and CoreFoundation (megabytes resident in every agent). Members are looked
/// up only in modules a file imports itself, so one reached through a dependency that imports
/// Foundation cannot pull it back in unnoticed.
let essentialsOnly: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

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
        .library(name: "HTTPClient", targets: ["HTTPClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Without its default traits: FullFoundation would link the whole of Foundation (ICU,
        // CoreFoundation) into the daemons for date formatters Berth never uses.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        /// libsodium's Argon2id, for password hashes.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        /// libxml2's SAX parser, for the configuration files.
        .systemLibrary(
            name: "CLibXML2",
            pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"])]
        ),
        /// glibc's allocator tuning (<malloc.h>, which Glibc's module leaves out).
        .systemLibrary(name: "CMalloc"),
        /// Requests, responses, endpoints, errors and the transport's protocol, carried by either
        /// transport below.
        .target(name: "HTTPWire", swiftSettings: essentialsOnly),
        /// HTTP/1.1 over libcurl: pooled connections on threads of their own, streams with flow
        /// control, cancellation, a Unix socket or TCP. The daemons' client of every server.
        .target(name: "HTTPClient", dependencies: ["CCurl", "HTTPWire"], swiftSettings: essentialsOnly),
        /// HTTP/1.1 on SwiftNIO for `berth`, which then needs no libcurl.
        .target(name: "NIOTransport", dependencies: [
            "HTTPWire", crypto, x509, asn1, nioSSL, .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOTLS", package: "swift-nio"),
        ], swiftSettings: essentialsOnly),
        /// The Docker Engine API: endpoints, models, the multiplexed stream. Only the agent uses it.
        .target(name: "EngineAPI", dependencies: ["HTTPClient"], swiftSettings: essentialsOnly),
        /// The release and the manager–agent protocol's version, shared by every program.
        .target(name: "BerthVersion"),
        /// What crosses the wire between client, manager and agents: the typed bodies, the route
        /// table both routers and clients use, and the rules for each value.
        .target(name: "BerthAPI", swiftSettings: essentialsOnly),
        .target(name: "BerthTar", swiftSettings: essentialsOnly),
        /// The cluster's certificates: making the CA and hosts' certificates, key fingerprints.
        .target(name: "BerthTLS", dependencies: ["BerthAPI", crypto, x509, asn1], swiftSettings: essentialsOnly),
        /// What the executables share beyond the wire: request signing, passwords, the client of a Berth daemon.
        .target(name: "BerthCore", dependencies: ["BerthAPI", "HTTPWire", "BerthVersion", crypto], swiftSettings: essentialsOnly),
        /// Password hashes: Argon2id (libsodium) and the older scrypt. Apart from BerthCore so that
        /// only the manager links libsodium.
        .target(name: "BerthPasswords", dependencies: ["BerthCore", "CSodium", crypto, cryptoExtras], swiftSettings: essentialsOnly),
        /// The daemons' configuration files (docker_server.xml, docker_user.xml), read with line numbers
        /// through libxml2. Apart from BerthCore so that `berth` links no XML parser.
        .target(name: "BerthConfig", dependencies: ["BerthAPI", "BerthCore", "BerthTLS", "HTTPClient", "CLibXML2"], swiftSettings: essentialsOnly),
        /// What both daemons share: loading their configuration, and HTTP serving with signed
        /// requests, bounded bodies, one-line JSON errors and /metrics.
        .target(name: "BerthServer", dependencies: ["BerthAPI", "BerthCore", "HTTPWire", "BerthConfig", "BerthCLI", "BerthTLS", "BerthVersion", argumentParser, nioSSL, .product(name: "HummingbirdCore", package: "hummingbird"), hummingbird, logging, prometheus, .product(name: "NIOCore", package: "swift-nio")], swiftSettings: essentialsOnly),
        /// What the three command-line tools share: one-line errors, tables, JSON output.
        .target(name: "BerthCLI", dependencies: ["BerthAPI", "BerthCore", "CMalloc", argumentParser], swiftSettings: essentialsOnly),
        .executableTarget(name: "Agent", dependencies: ["EngineAPI", "HTTPClient", "BerthAPI", "BerthCore", "BerthTLS", "BerthVersion", "BerthConfig", "BerthServer", "BerthCLI", "BerthTar", argumentParser, hummingbird, logging, prometheus], swiftSettings: essentialsOnly, linkerSettings: releaseLinking("berth-agent")),
        .executableTarget(name: "Manager", dependencies: ["HTTPClient", "BerthPasswords", .product(name: "NIOPosix", package: "swift-nio"), "BerthAPI", "BerthTLS", "BerthCore", "BerthVersion", "BerthConfig", "BerthServer", "BerthCLI", argumentParser, hummingbird, logging, prometheus], swiftSettings: essentialsOnly, linkerSettings: releaseLinking("berth-manager")),
        .executableTarget(name: "Client", dependencies: ["NIOTransport", "HTTPWire", "BerthAPI", "BerthCore", "BerthTLS", "BerthVersion", "BerthCLI", "BerthTar", "UnitProtocol", argumentParser], linkerSettings: releaseLinking("berth") + staticClient),
        /// The call protocol of `berth call` and `berth-unit`, free of Foundation.
        .target(name: "UnitProtocol"),
        /// `berth-unit`: small, static, no Foundation beyond FoundationEssentials.
        .executableTarget(name: "Unit", dependencies: [
            "UnitProtocol", "BerthVersion", "HTTPWire",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            nioSSL,
        ], linkerSettings: releaseLinking()),
        .executableTarget(name: "Bench", dependencies: ["CCurl", "BerthPasswords", "HTTPClient", "NIOTransport", "EngineAPI", "BerthAPI", "BerthCore", "BerthTLS", "BerthConfig", "UnitProtocol", "TestSupport", argumentParser], path: "bench/Sources"),
        /// What the tests of several modules use: a fake HTTP server on a Unix socket.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "HTTPClientTests", dependencies: ["HTTPClient", "TestSupport"]),
        .testTarget(name: "NIOTransportTests", dependencies: [
            "NIOTransport", "HTTPClient", "BerthAPI", "BerthTLS", "TestSupport", crypto, x509, nioSSL, .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "EngineAPITests", dependencies: ["EngineAPI", "HTTPClient", "TestSupport"]),
        .testTarget(name: "BerthAPITests", dependencies: ["BerthAPI"]),
        .testTarget(name: "BerthTarTests", dependencies: ["BerthTar"]),
        .testTarget(name: "BerthCoreTests", dependencies: ["BerthAPI", "BerthCore", "BerthPasswords"]),
        .testTarget(name: "BerthTLSTests", dependencies: ["BerthTLS", "BerthAPI"]),
        .testTarget(name: "BerthConfigTests", dependencies: ["BerthAPI", "BerthCore", "BerthConfig", "BerthTLS", "TestSupport"]),
        .testTarget(name: "BerthServerTests", dependencies: [
            "BerthServer", "BerthAPI", "BerthCore", "HTTPClient", "TestSupport", hummingbird, .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "UnitTests", dependencies: ["UnitProtocol", "TestSupport"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "BerthAPI", "BerthCore", "BerthConfig", "EngineAPI", "HTTPClient", "BerthTar"]),
        .testTarget(name: "ClientTests", dependencies: ["Client", "BerthAPI", "BerthCLI", "BerthCore", "UnitProtocol"]),
        /// The manager's routes in-process against a fake agent: no Docker engine.
        .testTarget(name: "ManagerTests", dependencies: [
            "Manager", "BerthPasswords", "BerthAPI", "BerthCore", "BerthConfig", "BerthServer", "TestSupport", hummingbird, logging,
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "IntegrationTests", dependencies: ["BerthPasswords", "EngineAPI", "HTTPClient", "NIOTransport", "BerthAPI", "BerthCore", "BerthTLS", "BerthVersion", "TestSupport", "BerthTar"]),
    ]
)
