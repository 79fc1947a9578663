import BerthAPI
import Hummingbird

// Serving the routes of the shared table: the path, method and body and answer types come from
// the route, so a handler cannot serve a path its clients do not call, or answer another shape.

extension RouterMethods where Context == BerthRequestContext {
    /// Serves `route`: its body decoded (a 400 naming the field at fault otherwise), its answer
    /// encoded as JSON.
    @discardableResult
    public func on<Body: Decodable, Answer: Encodable>(
        _ route: Route<Body, Answer>, use handler: @escaping @Sendable (Body, Request, Context) async throws -> Answer
    ) -> Self {
        on(RouterPath(route.path), method: route.method.http) { request, context in
            try jsonResponse(try await handler(try await request.decodeJSON(Body.self, limit: route.maxBody, context: context), request, context))
        }
    }

    /// Serves `route`, which takes no body, its answer encoded as JSON.
    @discardableResult
    public func on<Answer: Encodable>(
        _ route: Route<NoBody, Answer>, use handler: @escaping @Sendable (Request, Context) async throws -> Answer
    ) -> Self {
        on(RouterPath(route.path), method: route.method.http) { request, context in
            try jsonResponse(try await handler(request, context))
        }
    }

    /// Serves `route`, whose answer is JSON lines: `handler` emits each as it happens. `check`
    /// runs first, while a refusal can still be an error status rather than a line.
    @discardableResult
    public func on<Body: Decodable & Sendable, Event: Encodable & Sendable>(
        _ route: Route<Body, JSONLines<Event>>, check: @escaping @Sendable (Body) throws -> Void = { _ in },
        use handler: @escaping @Sendable (Body, Request, Context, _ emit: @escaping @Sendable (Event) async throws -> Void) async throws -> Void
    ) -> Self {
        on(RouterPath(route.path), method: route.method.http) { request, context in
            let body = try await request.decodeJSON(Body.self, limit: route.maxBody, context: context)
            try check(body)
            return jsonLinesResponse { emit in try await handler(body, request, context, emit) }
        }
    }

    /// Serves `route` with a response `handler` makes whole: streams of bytes, Prometheus text,
    /// or a route whose answer's shape depends on its query.
    @discardableResult
    public func on<Body, Answer>(
        raw route: Route<Body, Answer>, use handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) -> Self {
        on(RouterPath(route.path), method: route.method.http, use: handler)
    }
}

extension Route.Method {
    var http: HTTPRequest.Method {
        switch self {
        case .get: .get
        case .post: .post
        case .put: .put
        }
    }
}
