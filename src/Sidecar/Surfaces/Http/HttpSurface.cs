using System.Text.Json;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Health;
using LeaderSidecar.Surfaces.Metrics;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace LeaderSidecar.Surfaces.Http;

/// <summary>
/// The HTTP surface. <c>GET /leader</c> answers 200 only on the leader and 503 otherwise (the
/// convention Patroni's <c>/leader</c> check uses), and with <c>?wait=DURATION</c> holds the answer
/// until this replica leads or the wait ends; <c>GET /status</c> always 200; both with the JSON
/// status; <c>GET /watch</c> streams every change as server-sent events (<see cref="WatchEvents"/>).
/// <c>/healthz</c>, <c>/readyz</c> and <c>/metrics</c> are for the kubelet and Prometheus, and
/// are also served alone on the optional probe listener, which the kubelet can reach at the pod IP
/// while the app's endpoints stay on loopback. Handlers only read <see cref="LeadershipState"/>.
/// </summary>
internal static class HttpSurface
{
    private const string ProbeListener = "leader-sidecar.probe-listener";

    /// <summary>The longest long-poll; a longer <c>wait</c> is shortened to this.</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromMinutes(5);

    public static void MapLeadershipEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/leader", LeaderAsync);
        endpoints.MapGet("/watch", WatchEvents.StreamAsync);
        endpoints.MapGet("/status", context => WriteStatusAsync(context, context.RequestServices.GetRequiredService<LeadershipState>().Current, StatusCodes.Status200OK));
        endpoints.MapGet("/healthz", context => WriteProbeAsync(context, context.RequestServices.GetRequiredService<Probes>().Liveness()));
        endpoints.MapGet("/readyz", context => WriteProbeAsync(context, context.RequestServices.GetRequiredService<Probes>().Readiness()));
        endpoints.MapGet("/metrics", MetricsAsync);
    }

    /// <summary>Adds an HTTP/1.1 listener; a probe listener serves only the probe and metrics paths. Returns it (it learns its bound port).</summary>
    public static ListenOptions Listen(KestrelServerOptions kestrel, ListenAddress address, bool probesOnly)
    {
        ListenOptions? listener = null;
        kestrel.Listen(address.Ip!, address.Port, options =>
        {
            options.Protocols = HttpProtocols.Http1;
            if (probesOnly)
            {
                options.Use(next => connection =>
                {
                    connection.Items[ProbeListener] = true;
                    return next(connection);
                });
            }

            listener = options;
        });
        return listener!;
    }

    /// <summary>True for a request the probe listener may not serve: anything but the probes and metrics.</summary>
    public static bool IsOutsideProbeListener(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(ProbeListener) == true &&
        context.Request.Path.Value is not ("/healthz" or "/readyz" or "/metrics");

    private static async Task LeaderAsync(HttpContext context)
    {
        var services = context.RequestServices;
        var state = services.GetRequiredService<LeadershipState>();
        var status = state.Current;
        var query = context.Request.Query["wait"];
        if (query.Count > 0)
        {
            var wait = TimeSpan.Zero;
            var problem = query.Count > 1 ? "wait given more than once"
                : !GoDuration.TryParse(query[0] ?? "", out wait, out var error) ? error
                : wait < TimeSpan.Zero ? $"wait must not be negative (\"{query[0]}\")"
                : null;
            if (problem is not null)
            {
                await WriteErrorAsync(context, StatusCodes.Status400BadRequest, $"bad wait parameter: {problem}");
                return;
            }

            if (!status.IsLeader && wait > TimeSpan.Zero)
            {
                status = await WaitForLeaderAsync(context, state, status, wait < MaxWait ? wait : MaxWait);
            }
        }

        await WriteStatusAsync(context, status, status.IsLeader ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    /// <summary>
    /// Waits until this replica leads, the wait ends or the sidecar shuts down; returns the newest
    /// status either way.
    /// </summary>
    private static async Task<LeadershipStatus> WaitForLeaderAsync(HttpContext context, LeadershipState state, LeadershipStatus status, TimeSpan wait)
    {
        var services = context.RequestServices;
        using var timeout = new CancellationTokenSource(wait, services.GetRequiredService<TimeProvider>());
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, services.GetRequiredService<Drain>().Closing, context.RequestAborted);
        try
        {
            while (!status.IsLeader)
            {
                status = await state.WaitForChangeAsync(status.Revision, linked.Token);
            }

            return status;
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            return state.Current;
        }
    }

    private static async Task WriteStatusAsync(HttpContext context, LeadershipStatus status, int code)
    {
        var time = context.RequestServices.GetRequiredService<TimeProvider>();
        Prepare(context, code, "application/json");
        await JsonSerializer.SerializeAsync(context.Response.Body, StatusDocument.From(status, time), SurfaceJsonContext.Default.StatusDocument, context.RequestAborted);
    }

    private static async Task WriteProbeAsync(HttpContext context, string? problem)
    {
        Prepare(context, problem is null ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable, "application/json");
        var document = new ProbeDocument { Status = problem is null ? "ok" : "failing", Reason = problem };
        await JsonSerializer.SerializeAsync(context.Response.Body, document, SurfaceJsonContext.Default.ProbeDocument, context.RequestAborted);
    }

    private static async Task WriteErrorAsync(HttpContext context, int code, string message)
    {
        Prepare(context, code, "application/json");
        await JsonSerializer.SerializeAsync(context.Response.Body, new ErrorDocument { Error = message }, SurfaceJsonContext.Default.ErrorDocument, context.RequestAborted);
    }

    private static async Task MetricsAsync(HttpContext context)
    {
        Prepare(context, StatusCodes.Status200OK, SidecarMetrics.ContentType);
        await context.RequestServices.GetRequiredService<SidecarMetrics>().WriteAsync(context.Response.Body, context.RequestAborted);
    }

    private static void Prepare(HttpContext context, int code, string contentType)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = contentType;
        context.Response.Headers.CacheControl = "no-store";
    }
}
