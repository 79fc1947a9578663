import BerthAPI
import BerthCore
import HTTPClient
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One `<User>` of `docker_user.xml`: who may log in, with what limits, and which units
/// (`ip:port`, one container each) a login starts.
public struct UserConfig: Sendable, Equatable {
    /// How the password is kept: legacy plain text (`<Pwd>`) or the output of
    /// `berth-manager hash-password` (`<PwdHash>`).
    public enum Password: Sendable, Equatable {
        case plain(String), hash(String)
    }

    /// The login name; also a Docker label value and part of network names.
    public var name: String
    /// A display name, often the person's name in Chinese.
    public var alias: String?
    public var password: Password
    public var memory: MemorySpec
    /// Docker CPU shares.
    public var cpu: Int
    /// The host directory mounted read-write at `/app`.
    public var home: String
    /// `<Uid>`: the account the units run as; nil runs them as the home's owner.
    public var account: UnixAccount?
    /// In file order, which is the order `berth call` prints outputs in.
    public var units: [HostPort]
    /// The line of this user's `<User>`, for messages.
    public var line: Int

    public init(
        name: String, alias: String? = nil, password: Password, memory: MemorySpec, cpu: Int, home: String,
        account: UnixAccount? = nil, units: [HostPort], line: Int = 0
    ) {
        self.name = name
        self.alias = alias
        self.password = password
        self.memory = memory
        self.cpu = cpu
        self.home = home
        self.account = account
        self.units = units
        self.line = line
    }
}

/// The entry host's `docker_user.xml`: every user who may log in.
public struct UsersConfig: Sendable, Equatable {
    /// The file this was loaded from, for messages.
    public var file: String
    public var users: [UserConfig]

    public init(file: String = "docker_user.xml", users: [UserConfig]) {
        self.file = file
        self.users = users
    }

    /// Names are matched exactly: they are Docker label values, which are case-sensitive.
    public func user(named name: String) -> UserConfig? {
        users.first { $0.name == name }
    }

    static let elementNames = ["Name", "Alias", "Pwd", "PwdHash", "Memory", "CPU", "Home", "Uid", "Unit"]

    /// Validates against the server config (communication port). Returns config only when no errors.
    public static func load(path: String, server: ServerConfig?) -> (config: UsersConfig?, problems: [ConfigProblem]) {
        let root: LineXMLElement
        switch LineXML.load(path: path) {
        case .failure(let unusable): return (nil, [unusable.problem])
        case .success(let element): root = element
        }
        var problems = ConfigProblemList(file: path)
        guard root.name == "Users" else {
            problems.error(line: root.line, "the root element must be <Users>, not <\(root.name)>")
            return (nil, problems.inFileOrder)
        }
        var reader = UsersConfigReader(server: server, problems: problems)
        let users = reader.read(root)
        problems = reader.problems
        return (problems.hasErrors ? nil : UsersConfig(file: path, users: users), problems.inFileOrder)
    }
}

/// Validates the users of one `docker_user.xml`, collecting every problem, including those that
/// only show across users (a name or a unit given twice).
private struct UsersConfigReader {
    let server: ServerConfig?
    var problems: ConfigProblemList

    /// The first user to claim each name and each unit, to name both in a clash.
    private var userLineByName: [String: Int] = [:]
    private var ownerByUnit: [HostPort: (user: String, line: Int)] = [:]
    /// Every home read so far, to refuse one inside another.
    private var homes: [(home: String, clean: String, line: Int, subject: String)] = []

    init(server: ServerConfig?, problems: ConfigProblemList) {
        self.server = server
        self.problems = problems
    }

    mutating func read(_ root: LineXMLElement) -> [UserConfig] {
        root.warnAboutStrayContent(problems: &problems)
        var users: [UserConfig] = []
        for child in root.children {
            guard child.name == "User" else {
                problems.warning(line: child.line, "unknown element <\(child.name)> ignored")
                continue
            }
            if let user = readUser(child) {
                users.append(user)
            }
        }
        if !root.children.contains(where: { $0.name == "User" }) {
            problems.warning(line: root.line, "no <User> in the file; nobody can log in")
        }
        return users
    }

    private mutating func readUser(_ user: LineXMLElement) -> UserConfig? {
        let elements = user.valueChildren(known: UsersConfig.elementNames, problems: &problems)
        let name = readName(elements["Name"], user: user)
        // Later messages name the user when the name is usable, else point at its <User>.
        let subject = name.map { "user \($0)" } ?? "user at line \(user.line)"

        let password = readPassword(plain: elements["Pwd"], hash: elements["PwdHash"], user: user, subject: subject)
        let memory = required("Memory", in: elements, user: user, subject: subject).flatMap { readMemory($0) }
        let cpu = required("CPU", in: elements, user: user, subject: subject).flatMap { readCPU($0) }
        let home = required("Home", in: elements, user: user, subject: subject).flatMap { readHome($0, subject: subject) }
        let account = elements["Uid"].flatMap { readAccount($0, subject: subject) }
        let units = required("Unit", in: elements, user: user, subject: subject)
            .flatMap { readUnits($0, userName: name ?? elements["Name"]?.value ?? "(no name)", user: user, subject: subject) }
        let alias = elements["Alias"].map(\.value).flatMap { $0.isEmpty ? nil : $0 }

        guard let name, let password, let memory, let cpu, let home, let units else { return nil }
        return UserConfig(
            name: name, alias: alias, password: password, memory: memory, cpu: cpu, home: home, account: account, units: units,
            line: user.line)
    }

    private mutating func required(
        _ name: String, in elements: [String: LineXMLElement], user: LineXMLElement, subject: String
    ) -> LineXMLElement? {
        guard let element = elements[name] else {
            problems.error(line: user.line, "\(subject): missing <\(name)>")
            return nil
        }
        return element
    }

    private mutating func readName(_ element: LineXMLElement?, user: LineXMLElement) -> String? {
        guard let element else {
            problems.error(line: user.line, "missing <Name> in <User>")
            return nil
        }
        let name = element.value
        guard UnitRules.isValidUserName(name) else {
            problems.error(line: element.line,
                "user name \"\(name)\": use 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit (it becomes a Docker label and network name)")
            return nil
        }
        if let firstLine = userLineByName[name] {
            problems.error(line: element.line, "duplicate user name \(name) (first at line \(firstLine))")
        } else {
            userLineByName[name] = user.line
        }
        return name
    }

    private mutating func readPassword(
        plain: LineXMLElement?, hash: LineXMLElement?, user: LineXMLElement, subject: String
    ) -> UserConfig.Password? {
        switch (plain, hash) {
        case (nil, nil):
            problems.error(line: user.line, "\(subject): missing <PwdHash> (or the legacy plain-text <Pwd>)")
            return nil
        case let (plain?, hash?):
            problems.error(line: max(plain.line, hash.line), "\(subject): give <PwdHash> or <Pwd>, not both")
            return nil
        case let (plain?, nil):
            guard !plain.value.isEmpty else {
                problems.error(line: plain.line, "\(subject): <Pwd> is empty")
                return nil
            }
            problems.warning(line: plain.line,
                "\(subject): plain-text <Pwd>; replace it with <PwdHash> from berth-manager hash-password")
            return .plain(plain.value)
        case let (nil, hash?):
            guard !hash.value.isEmpty else {
                problems.error(line: hash.line, "\(subject): <PwdHash> is empty; fill it with the output of berth-manager hash-password")
                return nil
            }
            return .hash(hash.value)
        }
    }

    private mutating func readMemory(_ element: LineXMLElement) -> MemorySpec? {
        do throws(ConfigError) {
            return try MemorySpec(parsing: element.value)
        } catch {
            problems.error(line: element.line, error.message)
            return nil
        }
    }

    private mutating func readCPU(_ element: LineXMLElement) -> Int? {
        let text = element.value
        guard ConfigSyntax.isDigits(text), let shares = Int(text), shares >= 2 else {
            problems.error(line: element.line, "CPU \"\(text)\": must be an integer >= 2 (Docker CPU shares)")
            return nil
        }
        guard shares <= UnitRules.cpuShares.upperBound else {
            problems.error(line: element.line,
                "CPU \"\(text)\": must be at most \(UnitRules.cpuShares.upperBound) (Docker CPU shares)")
            return nil
        }
        return shares
    }

    /// A `..` could step out of the directory the admin meant to give, onto another user's home.
    private mutating func readHome(_ element: LineXMLElement, subject: String) -> String? {
        let home = element.value
        guard home.hasPrefix("/") else {
            problems.error(line: element.line, "home \"\(home)\": must be an absolute path")
            return nil
        }
        guard !home.split(separator: "/").contains("..") else {
            problems.error(line: element.line, "home \"\(home)\": must not contain a .. component")
            return nil
        }
        guard home != "/" && home.split(separator: "/").contains(where: { $0 != "." }) else {
            problems.error(line: element.line, "home \"\(home)\": must be a directory below /, not / itself")
            return nil
        }
        if let root = server?.homeRoot, !Self.path(home, isBelow: root) {
            problems.error(line: element.line, "home \(home) is not below <HomeRoot> \(root); agents refuse it")
            return nil
        }
        checkNesting(home, line: element.line, subject: subject)
        return home
    }

    /// Whether `path` lies strictly below `root`, name by name (`/opt/app2` is not below `/opt/app`),
    /// as the template check compares paths.
    static func path(_ path: String, isBelow root: String) -> Bool {
        let (inner, outer) = (TemplateCheck.lexicallyClean(path), TemplateCheck.lexicallyClean(root))
        return inner != outer && TemplateCheck.isWithinOrEqual(inner, outer)
    }

    /// A home inside another user's home is a directory that user can rename and replace with a
    /// symlink, which the engine would follow as root when it mounts the inner home.
    private mutating func checkNesting(_ home: String, line: Int, subject: String) {
        let clean = TemplateCheck.lexicallyClean(home)
        for other in homes where TemplateCheck.isWithinOrEqual(clean, other.clean) || TemplateCheck.isWithinOrEqual(other.clean, clean) {
            problems.error(line: line,
                "\(subject): home \(home) overlaps \(other.subject)'s home \(other.home) (line \(other.line)); give each user a directory of their own")
        }
        homes.append((home, clean, line, subject))
    }

    private mutating func readAccount(_ element: LineXMLElement, subject: String) -> UnixAccount? {
        let account: UnixAccount
        do throws(ConfigError) {
            account = try UnixAccount.parse(element.value)
        } catch {
            problems.error(line: element.line, "Uid \(error.message)")
            return nil
        }
        guard !account.isRoot else {
            problems.error(line: element.line, "\(subject): Uid \(account) is root's user or group; give the user's own account, e.g. 2001:2001")
            return nil
        }
        return account
    }

    private mutating func readUnits(
        _ element: LineXMLElement, userName: String, user: LineXMLElement, subject: String
    ) -> [HostPort]? {
        let list = element.value
        guard !list.isEmpty else {
            problems.error(line: element.line, "\(subject): <Unit> is empty; list one or more ip:port, separated by commas")
            return nil
        }
        var units: [HostPort] = []
        var valid = true
        for entry in list.split(separator: ",", omittingEmptySubsequences: false) {
            let text = entry.trimmed
            guard !text.isEmpty else {
                problems.error(line: element.line, "unit list \"\(list)\": an entry between commas is empty")
                valid = false
                continue
            }
            let unit: HostPort
            do throws(ConfigError) {
                unit = try HostPort.parse(text)
            } catch {
                problems.error(line: element.line, "unit \"\(text)\": \(error.message)")
                valid = false
                continue
            }
            if !check(unit, element: element, userName: userName, userLine: user.line, earlier: units) {
                valid = false
            }
            units.append(unit)
        }
        return valid ? units : nil
    }

    /// A unit port must be free for one container: the agents hold the communication port on
    /// every host, the manager holds its own address, and one `ip:port` can serve one user.
    private mutating func check(
        _ unit: HostPort, element: LineXMLElement, userName: String, userLine: Int, earlier: [HostPort]
    ) -> Bool {
        if let server {
            if unit.port == server.communicationPort {
                problems.error(line: element.line, "unit \(unit) uses the communication port \(server.communicationPort)")
                return false
            }
            if unit == server.manager {
                problems.error(line: element.line, "unit \(unit) is the manager's address (<Manager> in \(server.file))")
                return false
            }
        }
        if earlier.contains(unit) {
            problems.error(line: element.line, "unit \(unit) is listed twice for user \(userName)")
            return false
        }
        if let owner = ownerByUnit[unit] {
            problems.error(line: element.line,
                "unit \(unit) is assigned to both \(owner.user) (line \(owner.line)) and \(userName) (line \(userLine))")
            return false
        }
        ownerByUnit[unit] = (userName, userLine)
        return true
    }
}
