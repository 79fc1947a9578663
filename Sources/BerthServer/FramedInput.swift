import BerthAPI
import BerthCore
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Hummingbird
import Logging

/// The body of an interactive request, frame by frame (`ExecInput`): the opening request, then
/// stdin, sizes and the end of input as the client sends them. One reader.
public final class FramedInput: @unchecked Sendable {
    private var body: RequestBody.AsyncIterator
    private var decoder: ExecInputDecoder
    private var pending: [ExecInput] = []

    private init(_ body: RequestBody, maxRequestFrame: Int) {
        self.body = body.makeAsyncIterator()
        decoder = ExecInputDecoder(maxRequestFrame: maxRequestFrame)
    }

    /// Reads the opening frame, still within the request deadline, checks it against the signed
    /// digest if any, and decodes it as `T`; only then may the request last as long as its body.
    /// `maxRequestFrame`: the route's cap on a body, which the opening frame stands for.
    public static func open<T: Decodable>(
        _ request: Request, as type: T.Type, maxRequestFrame: Int, context: BerthRequestContext
    ) async throws -> (T, FramedInput) {
        let input = FramedInput(request.body, maxRequestFrame: maxRequestFrame)
        guard case .request(let json)? = try await input.next() else {
            throw APIError(.badRequest, "an interactive request begins with its request frame (kind 0)", closing: true)
        }
        if let digest = context.signedBodyDigest, !RequestVerifier.body(json, matches: digest) {
            context.logger.warning("refused request", metadata: ["path": "\(request.uri.path)", "reason": "\(RequestVerifier.Refusal.bodyMismatch)"])
            throw APIError(.unauthorized, "unauthorized: \(RequestVerifier.Refusal.bodyMismatch)", closing: true)
        }
        let decoded: T
        do {
            decoded = try BerthJSON.decodeRequest(type, from: json)
        } catch {
            throw APIError(.badRequest, error.description, closing: true)
        }
        context.channel.requestMayLast()
        return (decoded, input)
    }

    /// The next frame, or nil at the end of the body.
    public func next() async throws -> ExecInput? {
        while pending.isEmpty {
            guard let piece = try await body.next() else { return nil }
            do {
                pending = try decoder.feed(piece.readableBytesView)
            } catch {
                throw APIError(.badRequest, error.description, closing: true)
            }
        }
        return pending.removeFirst()
    }
}

extension Request {
    /// Whether the body is an interactive request's frames rather than JSON.
    public var isFramed: Bool {
        headers[.contentType] == OutputStream.contentType
    }
}
