import Testing
@testable import Agent

/// `berth-agent api-dump` sends a path as given when it names an API version, and prefixes the
/// engine's version otherwise.
@Suite struct APIDumpTests {
    @Test(arguments: [("/v1.41/containers/json", true), ("/v1.4/x", true), ("/v12.345/", true), ("/containers/json", false),
                      ("/_ping", false), ("/v1/x", false), ("/v1.41", false), ("/v.41/x", false), ("/v1./x", false), ("/va.b/x", false), ("v1.41/x", false)])
    func versionedPaths(path: String, versioned: Bool) {
        #expect(APIDump.isVersioned(path) == versioned)
    }
}
