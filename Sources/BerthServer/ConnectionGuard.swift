import HTTPWire
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What one daemon lets its clients hold: connections in total, connections per address that
/// have not yet proved who they are, and the time a request may take to arrive. A slow sender
/// (slowloris: a head or body trickled a byte at a time, or nothing at all) loses its connection
/// at the deadline, whatever it still sends.
public struct ConnectionLimits: Sendable {
    public var total = 2048
    /// Connections of one address not yet authenticated (a valid signature, token or password):
    /// what one stranger can hold. The manager's connections to an agent, or a classroom behind
    /// one NAT, count here only until their first request is accepted.
    public var perAddress = 64
    /// From a request's first byte (or the connection's start) to the end of its body.
    public var requestDeadline: TimeAmount = .seconds(10)
    /// How long a kept-alive connection may wait for its next request.
    public var idleTimeout: TimeAmount = .seconds(60)
    /// Connections one user's token or password makes trusted; past that a user's connection
    /// is treated as a stranger's, so one user cannot hold every place that never gives way.
    public var perUser = 64

    public init() {}
}

/// Counts connections, in total and per address until they authenticate (`ConnectionPlaces`): at
/// a limit the oldest stranger's connection gives way to the new one, so strangers cannot keep
/// out a client that authenticates at once, such as the manager reaching an agent from an address
/// a hostile unit's traffic shares.
public final class ConnectionCounter: Sendable {
    let limits: ConnectionLimits
    private let places: Mutex<ConnectionPlaces<ObjectIdentifier, any Channel>>

    public init(limits: ConnectionLimits = ConnectionLimits()) {
        self.limits = limits
        places = Mutex(ConnectionPlaces(total: limits.total, perGroup: limits.perAddress, perOwner: limits.perUser))
    }

    /// `owner`'s connections are strangers' again, from their next request on: its session ended,
    /// and a taken token must not keep the places it won.
    public func distrust(owner: String) {
        let channels = places.withLock { $0.distrust(owner) }
        for channel in channels {
            channel.eventLoop.execute {
                (try? channel.pipeline.syncOperations.handler(type: RequestClock.self))?.distrusted()
            }
        }
    }

    /// Counts a new connection from `address`, closing the one that gives way to it; false when
    /// none can.
    func admit(_ channel: any Channel, from address: String) -> Bool {
        let (admitted, gaveWay) = places.withLock { $0.admit(ObjectIdentifier(channel), holder: channel, group: address) }
        gaveWay?.close(promise: nil)
        return admitted
    }

    func shield(_ channel: any Channel, from address: String, _ shielded: Bool = true) {
        places.withLock { $0.shield(ObjectIdentifier(channel), group: address, shielded) }
    }

    func trust(_ channel: any Channel, from address: String, owner: String?) -> Bool {
        places.withLock { $0.trust(ObjectIdentifier(channel), group: address, owner: owner) }
    }

    func release(_ channel: any Channel, from address: String) {
        places.withLock { $0.release(ObjectIdentifier(channel), group: address) }
    }
}

/// Hummingbird's child channel with handlers of Berth's in front: `prepare` adds them to a new
/// connection's pipeline (or throws, and the connection is closed unanswered) before `base` adds
/// its own.
struct PreparedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let prepare: @Sendable (any Channel) throws -> Void

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            try prepare(channel)
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }.flatMapErrorThrowing { error in
            channel.close(promise: nil)
            throw error
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension PreparedChannel: HTTPChannelHandler where Base: HTTPChannelHandler {
    var responder: HTTPChannelHandler.Responder { base.responder }
}

extension ConnectionCounter {
    /// Counts a new connection, and times its requests from its first byte (the handler goes
    /// first in the pipeline, so TLS records count as arriving too); throws past a limit.
    func guardConnection(_ channel: any Channel) throws {
        let address = channel.remoteAddress?.ipAddress ?? "unknown"
        guard admit(channel, from: address) else { throw ConnectionRefused() }
        let clock = RequestClock(counter: self, address: address)
        channel.closeFuture.whenComplete { [self] _ in release(channel, from: address) }
        try channel.pipeline.syncOperations.addHandler(clock)
    }
}

struct ConnectionRefused: Error {}

extension Channel {
    /// Runs `body` once the client has hung up: closed the connection, or only its sending side,
    /// which is all a client that goes away shows while nothing is written to it.
    public func whenClientHangsUp(_ body: @escaping @Sendable () -> Void) {
        closeFuture.whenComplete { _ in body() }
        let channel = self
        eventLoop.execute {
            (try? channel.pipeline.syncOperations.handler(type: RequestClock.self))?.hungUp?.whenSuccess { body() }
        }
    }

    /// Lets the request being read take as long as its body lasts, past the request deadline:
    /// for a route that has authenticated it and reads its body as it comes (an interactive
    /// command's keystrokes). Call it before reading the body.
    public func requestMayLast() {
        let channel = self
        eventLoop.execute {
            (try? channel.pipeline.syncOperations.handler(type: RequestClock.self))?.requestMayLast()
        }
    }

    /// The request read is let take longer to answer than a stranger's may (a login waiting its
    /// turn for a password check), and its connection gives way to no newer one meanwhile.
    /// Returns once the connection knows.
    public func answerMayTakeLong() async {
        let channel = self
        try? await eventLoop.submit {
            (try? channel.pipeline.syncOperations.handler(type: RequestClock.self))?.answerMayTakeLong()
        }.get()
    }

    /// Marks the connection as authenticated, so it no longer counts against its address's
    /// limit of strangers' connections; for a user (`owner`), within the user's share of such
    /// connections.
    public func markAuthenticated(owner: String? = nil) {
        let channel = self
        eventLoop.execute {
            (try? channel.pipeline.syncOperations.handler(type: RequestClock.self))?.authenticated(owner: owner)
        }
    }
}

/// Times each request on the raw bytes: the first byte after an idle spell starts the deadline,
/// the request's end (seen by `RequestEnds`, after the HTTP decoder) stops it, and the response's
/// end starts the idle timeout. Also knows whether the connection has authenticated. Only the
/// event loop touches it.
final class RequestClock: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// `streaming`: a request whose route reads its body for as long as it lasts (keystrokes).
    private enum Phase { case receiving, streaming, processing, idle }

    private let counter: ConnectionCounter
    private let address: String
    private var limits: ConnectionLimits { counter.limits }
    private var phase = Phase.receiving
    /// Requests read whole and not yet answered: a client may send the next before the answer
    /// to the one before has gone out.
    private var answersOwed = 0
    /// Bytes of a next request came while this one was answered: its deadline runs from the
    /// answer's end, not the idle timeout.
    private var readWhileProcessing = false
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    /// Set once a request on this connection authenticated: its answers and idle spells then
    /// take a user's time, not a stranger's.
    private var trusted = false
    /// Completed when the client has gone: it closed its side (clients are let half-close, so
    /// this shows no other way while nothing is written to them) or the connection ended.
    private var hangUp: EventLoopPromise<Void>?

    init(counter: ConnectionCounter, address: String) {
        self.counter = counter
        self.address = address
    }

    /// Whether this request's answer may take longer than a stranger's: its route said so, maybe
    /// before the request's end was read.
    private var answerMayLast = false

    func answerMayTakeLong() {
        guard let channel = context?.channel else { return }
        answerMayLast = true
        if phase == .processing { timer?.cancel() }
        counter.shield(channel, from: address)
    }

    func authenticated(owner: String?) {
        guard !trusted, let channel = context?.channel, counter.trust(channel, from: address, owner: owner) else { return }
        trusted = true
        // A user's answer may stream for as long as it lasts (logs, exec).
        if phase == .processing { timer?.cancel() }
    }

    /// The owner's session ended: a stranger's deadlines from here on.
    func distrusted() {
        guard trusted else { return }
        trusted = false
        if phase == .idle { arm(limits.requestDeadline) }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        hangUp = context.eventLoop.makePromise()
        // The handshake, the head and the body of the first request: all within the deadline.
        arm(limits.requestDeadline)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        hangUp?.succeed()
        self.context = nil
    }

    /// Completes when the client hangs up; see `Channel.whenClientHangsUp`.
    var hungUp: EventLoopFuture<Void>? { hangUp?.futureResult }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            hangUp?.succeed()
            // Nothing is owed to a client that has stopped sending between requests (or halfway
            // through one): the connection ends now rather than hold its place until a deadline.
            if phase != .processing {
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        hangUp?.succeed()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if phase == .idle { requestStarted() }
        if phase == .processing { readWhileProcessing = true }
        context.fireChannelRead(data)
    }

    func requestStarted() {
        guard phase == .idle else { return }
        phase = .receiving
        arm(limits.requestDeadline)
    }

    /// A stranger's answer must be out within the request deadline too: one that is never read
    /// (a client that sends and stops reading) would otherwise hold its connection for good.
    func requestReceived() {
        phase = .processing
        answersOwed += 1
        timer?.cancel()
        if !trusted && !answerMayLast { arm(limits.requestDeadline) }
    }

    func requestMayLast() {
        guard phase == .receiving else { return }
        phase = .streaming
        timer?.cancel()
    }

    /// A response has gone out; one given before its request was read whole (a refusal on the
    /// head, a 413) ends the connection, since the rest of that request is never read.
    func responseFinished() {
        guard phase != .receiving && phase != .streaming else {
            timer?.cancel()
            context?.close(promise: nil)
            return
        }
        answersOwed = max(0, answersOwed - 1)
        if answersOwed > 0 {
            // The next answer is owed now, on the same terms.
            if !trusted { arm(limits.requestDeadline) }
            return
        }
        phase = .idle
        if answerMayLast, let channel = context?.channel {
            answerMayLast = false
            counter.shield(channel, from: address, false)
        }
        // A stranger keeps no connection idle longer than a request may take: nothing Berth's
        // clients do needs it, and the start of a next request sent behind the last one, held
        // by the decoder unseen here, is cut at that deadline too.
        arm(readWhileProcessing || !trusted ? limits.requestDeadline : limits.idleTimeout)
        readWhileProcessing = false
    }

    private func arm(_ delay: TimeAmount) {
        timer?.cancel()
        guard let context else { return }
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: delay) { channel.close(promise: nil) }
    }
}

/// Tells the connection's `RequestClock` where requests and responses end.
final class RequestEnds: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var clock: RequestClock?

    func handlerAdded(context: ChannelHandlerContext) {
        clock = try? context.pipeline.syncOperations.handler(type: RequestClock.self)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: clock?.requestStarted()
        case .end: clock?.requestReceived()
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            let clock = clock
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in clock?.responseFinished() }
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
        } else {
            context.write(data, promise: promise)
        }
    }
}
