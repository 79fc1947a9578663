import ArgumentParser
import BerthCLI
import BerthAPI
import BerthConfig
import BerthCore

/// Loads docker_server.xml (and, given a path, docker_user.xml), printing every problem, errors
/// and warnings, to stderr; any error is fatal.
public func loadConfigs(server path: String, users usersPath: String? = nil) throws -> (ServerConfig, UsersConfig?) {
    let (server, serverProblems) = ServerConfig.load(path: path)
    let (users, userProblems) = usersPath.map { UsersConfig.load(path: $0, server: server) } ?? (nil, [])
    for problem in serverProblems + userProblems { note("\(problem)") }
    guard let server, usersPath == nil || users != nil else { throw ExitCode.failure }
    return (server, users)
}

/// Loads the host's `<Template>` (else the built-in one) and checks it against the host's policy,
/// printing every problem as `FILE: FIELD: message` to stderr; any error is fatal. `homes` are the
/// users' homes where they are known (on the entry host).
public func loadTemplate(_ server: ServerConfig, homes: [String] = [], engineRemapsUsers: Bool = false) throws -> UnitTemplate {
    let template: UnitTemplate
    do throws(ConfigError) {
        template = try server.template.map { path throws(ConfigError) in try UnitTemplate.load(path: path) } ?? .builtIn
    } catch {
        throw failure(error.message)
    }
    let problems = template.problems(server.templatePolicy(homes: homes, engineRemapsUsers: engineRemapsUsers))
    for problem in problems { note("\(template.source): \(problem)") }
    guard problems.allSatisfy(\.isWarning) else { throw ExitCode.failure }
    return template
}
