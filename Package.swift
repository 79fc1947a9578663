// swift-tools-version:6.0
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "Berth",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "berth-agent", targets: ["Agent"]),
        .executable(name: "berth-bench", targets: ["Bench"]),
        .library(name: "EngineAPI", targets: ["EngineAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "EngineAPI", dependencies: ["CCurl"]),
        .executableTarget(name: "Agent", dependencies: ["EngineAPI", argumentParser]),
        .executableTarget(name: "Bench", dependencies: ["EngineAPI", argumentParser], path: "bench/Sources"),
        .testTarget(name: "EngineAPITests", dependencies: ["EngineAPI"]),
        .testTarget(name: "IntegrationTests", dependencies: ["EngineAPI"]),
    ]
)
