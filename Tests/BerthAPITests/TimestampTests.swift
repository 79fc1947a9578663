import Foundation
import Testing
@testable import BerthAPI

/// Berth's ICU-free dates must read and write what Foundation's ISO 8601 formatter does, since
/// the wire, the session file and older peers use that form.
@Suite struct TimestampTests {
    static let moments: [Double] = [0, 1, 59.999, 951_782_400 /* 29 Feb 2000 */, 1_796_225_733.75, 4_102_444_799 /* 2099-12-31 */, -86_400.5]

    @Test(arguments: moments)
    func writesWhatISO8601DateFormatterWrites(seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        #expect(date.iso8601 == ISO8601DateFormatter().string(from: date))
    }

    @Test(arguments: moments)
    func readsWhatItWrites(seconds: Double) throws {
        let date = Date(timeIntervalSince1970: seconds.rounded(.down))
        #expect(Date(iso8601: date.iso8601) == date)
    }

    @Test func readsFractionsAndOffsets() {
        #expect(Date(iso8601: "2026-12-02T15:35:33.25Z") == Date(timeIntervalSince1970: 1_796_225_733.25))
        #expect(Date(iso8601: "2026-12-02T16:35:33+01:00") == Date(timeIntervalSince1970: 1_796_225_733))
        #expect(Date(iso8601: "2026-12-02T10:05:33-05:30") == Date(timeIntervalSince1970: 1_796_225_733))
        #expect(Date(iso8601: "2026-12-02t15:35:33z") == Date(timeIntervalSince1970: 1_796_225_733))
    }

    @Test(arguments: ["", "2026-12-02", "2026-12-02T15:35:33", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                      "2026-12-02T24:00:00Z", "2026-12-02T15:35:33.Z", "2026-12-02T15:35:33Zjunk", "2026-12-02T15:35:33+0100",
                      "２０２６-12-02T15:35:33Z", "yesterday"])
    func refusesWhatIsNotADate(text: String) {
        #expect(Date(iso8601: text) == nil)
    }

    @Test func wireDatesRoundTripAndNameTheBadValue() throws {
        let summary = SessionSummary(user: "ann", since: Date(timeIntervalSince1970: 1_796_225_733), lastSeen: Date(timeIntervalSince1970: 1_796_225_790), from: "127.0.0.1", units: [])
        let json = try BerthJSON.encoder.encode(summary)
        #expect(String(decoding: json, as: UTF8.self).contains("\"since\":\"2026-12-02T15:35:33Z\""))
        let back = try BerthJSON.decoder.decode(SessionSummary.self, from: json)
        #expect(back.since == summary.since && back.lastSeen == summary.lastSeen)
        let bad = Data(String(decoding: json, as: UTF8.self).replacingOccurrences(of: "2026-12-02T15:35:33Z", with: "soon").utf8)
        #expect {
            try BerthJSON.decoder.decode(SessionSummary.self, from: bad)
        } throws: { error in
            "\(error)".contains("\"soon\"")
        }
    }
}
