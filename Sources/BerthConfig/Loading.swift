import ArgumentParser
import BerthCLI
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
