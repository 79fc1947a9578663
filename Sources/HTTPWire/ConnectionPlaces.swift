/// A server's places for connections: `total` in all, and `perGroup` per group (a client's
/// address) for those not yet trusted. At a limit, a new connection takes the place of the oldest
/// untrusted one (of its group, when the group is at its limit) that is not shielded: strangers
/// holding every place cannot keep out a client that proves itself at once. Only when no such
/// connection is left is the new one refused. The manager, the agents and `berth-unit` count
/// their connections with it; the caller keeps it behind a lock.
public struct ConnectionPlaces<Key: Hashable, Holder> {
    public let total: Int
    public let perGroup: Int
    /// Trusted connections of one owner (a user): one user's valid token must not buy every
    /// place that no longer gives way.
    public let perOwner: Int
    private var used = 0
    private var owned: [String: [Key: (group: String, holder: Holder, shielded: Bool)]] = [:]
    private var ownerOf: [Key: String] = [:]
    private var untrusted: [String: [Key: (order: Int, holder: Holder, shielded: Bool)]] = [:]
    /// Connections that gave their place to a newer one: their release gives none back.
    private var gaveWay: Set<Key> = []
    private var next = 0

    public init(total: Int, perGroup: Int, perOwner: Int = .max) {
        self.total = total
        self.perGroup = perGroup
        self.perOwner = perOwner
    }

    /// Takes a place for `key`, untrusted, in `group`: whether it got one, and the holder of the
    /// connection that gave way to it, which the caller closes.
    public mutating func admit(_ key: Key, holder: Holder, group: String) -> (admitted: Bool, gaveWay: Holder?) {
        var evicted: Holder?
        if untrusted[group, default: [:]].count >= perGroup {
            guard let oldest = oldest(in: [group]) else { return (false, nil) }
            evicted = remove(oldest)
        } else if used >= total {
            guard let oldest = oldest(in: Array(untrusted.keys)) else { return (false, nil) }
            evicted = remove(oldest)
        } else {
            used += 1
        }
        untrusted[group, default: [:]][key] = (next, holder, false)
        next += 1
        return (true, evicted)
    }

    /// The connection's answer may take a while (a login waiting for its password check): it
    /// still counts against its group, but gives way to no newer one until `shielded` is false;
    /// an owner's connection keeps the mark for when its trust ends.
    public mutating func shield(_ key: Key, group: String, _ shielded: Bool = true) {
        untrusted[group]?[key]?.shielded = shielded
        if let owner = ownerOf[key] { owned[owner]?[key]?.shielded = shielded }
    }

    /// The connection proved itself: it no longer counts against its group, nor gives way. For
    /// an `owner`, only while the owner holds fewer than `perOwner` such connections; false when
    /// it stays a stranger's.
    @discardableResult
    public mutating func trust(_ key: Key, group: String, owner: String? = nil) -> Bool {
        guard let place = untrusted[group]?[key] else { return true }
        if let owner {
            guard owned[owner, default: [:]].count < perOwner else { return false }
            owned[owner, default: [:]][key] = (group, place.holder, place.shielded)
            ownerOf[key] = owner
        }
        forget(key, group: group)
        return true
    }

    /// The owner's trust is over (the user's session ended): its connections are strangers' again,
    /// the newest of their groups. Returns their holders, for the caller to tell.
    public mutating func distrust(_ owner: String) -> [Holder] {
        guard let connections = owned.removeValue(forKey: owner) else { return [] }
        for (key, place) in connections {
            ownerOf[key] = nil
            untrusted[place.group, default: [:]][key] = (next, place.holder, place.shielded)
            next += 1
        }
        return connections.values.map(\.holder)
    }

    /// The connection closed.
    public mutating func release(_ key: Key, group: String) {
        if let owner = ownerOf.removeValue(forKey: key) {
            owned[owner]?[key] = nil
            if owned[owner]?.isEmpty == true { owned[owner] = nil }
        }
        if gaveWay.remove(key) != nil { return }
        used -= 1
        forget(key, group: group)
    }

    private func oldest(in groups: [String]) -> (key: Key, group: String)? {
        groups.flatMap { group in
            (untrusted[group] ?? [:]).filter { !$0.value.shielded }.map { (key: $0.key, group: group, order: $0.value.order) }
        }.min { $0.order < $1.order }.map { ($0.key, $0.group) }
    }

    private mutating func remove(_ place: (key: Key, group: String)) -> Holder? {
        let holder = untrusted[place.group]?[place.key]?.holder
        forget(place.key, group: place.group)
        gaveWay.insert(place.key)
        return holder
    }

    private mutating func forget(_ key: Key, group: String) {
        untrusted[group]?[key] = nil
        if untrusted[group]?.isEmpty == true { untrusted[group] = nil }
    }
}
