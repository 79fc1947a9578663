/// A token bucket: up to `capacity` actions at once, refilled at `perSecond`. Time is the
/// caller's, from one monotonic clock, so the bucket is a plain value and easy to test.
public struct TokenBucket: Sendable {
    public let capacity: Double
    public let perSecond: Double
    private var tokens: Double
    private var updated: ContinuousClock.Instant

    public init(capacity: Int, perSecond: Double, now: ContinuousClock.Instant) {
        self.capacity = Double(capacity)
        self.perSecond = perSecond
        tokens = Double(capacity)
        updated = now
    }

    /// Takes one token; false, taking nothing, when the bucket is empty.
    public mutating func take(now: ContinuousClock.Instant) -> Bool {
        refill(now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whether a token is there, taking none.
    public mutating func hasToken(now: ContinuousClock.Instant) -> Bool {
        refill(now)
        return tokens >= 1
    }

    /// Puts back a token taken for an action that turned out not to count.
    public mutating func giveBack() {
        tokens = min(capacity, tokens + 1)
    }

    private mutating func refill(_ now: ContinuousClock.Instant) {
        let elapsed = now - updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(capacity, tokens + max(0, seconds) * perSecond)
        updated = now
    }
}

/// A dictionary that keeps at most `capacity` entries, forgetting the least recently used: state
/// kept per name or per address, which senders of junk could otherwise grow without bound.
/// Evicts a tenth at a time, so a flood costs one sort per many insertions.
public struct RecentTable<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    public let capacity: Int
    private var entries: [Key: (value: Value, used: UInt64)] = [:]
    private var tick: UInt64 = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var count: Int { entries.count }

    /// The value for `key`, marked as used; nil when none is kept.
    public mutating func value(for key: Key) -> Value? {
        guard let entry = entries[key] else { return nil }
        tick += 1
        entries[key] = (entry.value, tick)
        return entry.value
    }

    /// Changes the value for `key` (made by `make` when there is none) and marks it used.
    @discardableResult
    public mutating func update<Result>(_ key: Key, make: () -> Value, _ body: (inout Value) -> Result) -> Result {
        tick += 1
        var value = entries[key]?.value ?? make()
        let result = body(&value)
        entries[key] = (value, tick)
        if entries.count > capacity { evict() }
        return result
    }

    /// Changes the value for `key` if one is kept; marks it used.
    public mutating func modifyIfPresent(_ key: Key, _ body: (inout Value) -> Void) {
        guard var entry = entries[key] else { return }
        tick += 1
        body(&entry.value)
        entries[key] = (entry.value, tick)
    }

    public mutating func remove(_ key: Key) {
        entries[key] = nil
    }

    private mutating func evict() {
        let excess = entries.count - capacity + max(1, capacity / 10)
        let oldest = entries.sorted { $0.value.used < $1.value.used }.prefix(excess)
        for (key, _) in oldest { entries[key] = nil }
    }
}
