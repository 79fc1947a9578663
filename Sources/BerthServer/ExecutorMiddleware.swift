import Hummingbird

/// Runs every request's handler on one executor. The agent gives its engine transport's, so the
/// handler's engine calls and socket probes run on the thread it is on, without hand-offs.
public struct TaskExecutorMiddleware<Context: RequestContext>: RouterMiddleware {
    let executor: any TaskExecutor

    public init(_ executor: any TaskExecutor) {
        self.executor = executor
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        try await withTaskExecutorPreference(executor) {
            try await next(request, context)
        }
    }
}
