import Testing

@testable import HTTPWire

/// How durations read in progress lines and in the daemons' logs.
@Suite struct DurationTextTests {
    @Test(arguments: [
        (Duration.zero, "0.0"), (.microseconds(49), "0.0"), (.microseconds(50), "0.1"), (.microseconds(7_349), "7.3"),
        (.microseconds(7_350), "7.4"), (.milliseconds(239), "239.0"), (.seconds(2) + .microseconds(999_960), "3000.0"),
    ])
    func loggedMillisecondsAreRoundedToATenth(duration: Duration, text: String) {
        #expect(duration.tenthsOfMilliseconds == text)
    }

    @Test func wholeMillisecondsAreRoundedDown() {
        #expect(Duration.microseconds(7_999).milliseconds == 7)
    }
}
