import Testing
@testable import BerthAPI

/// The route table both routers and clients use.
@Suite struct RoutesTests {
    static let manager = [
        ManagerRoutes.login.description, ManagerRoutes.logout.description, ManagerRoutes.status.description,
        ManagerRoutes.exec.description, ManagerRoutes.logs.description, ManagerRoutes.sessions.description,
        ManagerRoutes.endSession.description, ManagerRoutes.metrics.description,
    ]
    static let agent = [
        AgentRoutes.health.description, AgentRoutes.startUnit.description, AgentRoutes.stopUnits.description,
        AgentRoutes.units.description, AgentRoutes.unitLogs.description, AgentRoutes.exec.description, AgentRoutes.metrics.description,
    ]

    /// The manager's paths are a published API: a change here breaks every client in the field.
    @Test func theManagersAPIKeepsItsPaths() {
        #expect(Self.manager == [
            "POST /v1/login", "POST /v1/logout", "GET /v1/status", "POST /v1/exec", "GET /v1/logs",
            "GET /v1/admin/sessions", "POST /v1/admin/sessions/end", "GET /metrics",
        ])
        #expect([ManagerRoutes.sessions.path, ManagerRoutes.endSession.path].allSatisfy { $0.hasPrefix(ManagerRoutes.adminPrefix) })
        #expect(Self.manager.filter { $0.contains(ManagerRoutes.adminPrefix) }.count == 2, "only the admin routes lie under the admin prefix")
    }

    @Test func noTwoRoutesOfADaemonShareAMethodAndPath() {
        #expect(Set(Self.manager).count == Self.manager.count)
        #expect(Set(Self.agent).count == Self.agent.count)
        // The one deliberate pair: a start answered whole, or as it goes.
        #expect(AgentRoutes.startUnitWithProgress.description == AgentRoutes.startUnit.description)
        #expect(AgentRoutes.startUnitWithProgress.query.map(\.name) == ["progress"] && AgentRoutes.startUnit.query.isEmpty)
    }
}
