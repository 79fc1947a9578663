import Foundation
import Testing
@testable import BerthAPI

/// Values cross the wire typed, and are checked when read, as when read from a file.
@Suite struct WireTypesTests {
    @Test func aStartRequestsMemoryIsCheckedWhenRead() throws {
        let good = #"{"user":"aaa","session":"s","unit":"10.0.0.1:8281","memory":"1g,256m","cpu":512,"home":"/opt/app/aaa","account":"2001:2001","unitSecret":"k"}"#
        let request = try BerthJSON.decodeRequest(StartUnitRequest.self, from: Data(good.utf8))
        #expect(request.memory.limitBytes == 1 << 30 && request.memory.newSizeBytes == 256 << 20)
        #expect(request.account == UnixAccount(uid: 2001, gid: 2001))
        #expect(String(decoding: try BerthJSON.encoder.encode(request), as: UTF8.self).contains(#""memory":"1g,256m""#))
        for (field, bad) in [("memory", #""memory":"1.5g""#), ("account", #""account":"0:0x""#)] {
            let text = good.replacingOccurrences(of: field == "memory" ? #""memory":"1g,256m""# : #""account":"2001:2001""#, with: bad)
            #expect(throws: RequestBodyError.self) { try BerthJSON.decodeRequest(StartUnitRequest.self, from: Data(text.utf8)) }
        }
    }

    @Test func loginProgressStatesAreTyped() throws {
        let line = #"{"kind":"unit","state":"queued","unit":"10.0.0.1:8281","message":"next in line"}"#
        #expect(try BerthJSON.decoder.decode(LoginEvent.self, from: Data(line.utf8)).state == .queued)
    }
}
