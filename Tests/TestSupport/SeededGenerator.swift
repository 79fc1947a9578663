/// SplitMix64: tiny, fast and the same on every platform, so a seed replays a run exactly (the
/// fuzz tests' inputs, the benchmark's bootstrap draws).
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    /// The generator of one numbered case of a run: each case its own stream, the same every time.
    public init(seed: UInt64, case number: Int) {
        state = seed &+ UInt64(number) &* 0x9E37_79B9_7F4A_7C15
        _ = next()
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
