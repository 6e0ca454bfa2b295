using System.Text.Json;
using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.Http;

/// <summary>
/// The HTTP surface. <c>GET /leader</c> answers 200 only on the leader and 503 otherwise (the
/// convention Patroni's <c>/leader</c> check uses), <c>GET /status</c> always 200; both with the
/// JSON status. Handlers only read <see cref="LeadershipState"/>.
/// </summary>
internal static class HttpSurface
{
    public static void MapLeadershipEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/leader", context => WriteStatusAsync(context, leaderOnly: true));
        endpoints.MapGet("/status", context => WriteStatusAsync(context, leaderOnly: false));
    }

    private static async Task WriteStatusAsync(HttpContext context, bool leaderOnly)
    {
        var services = context.RequestServices;
        var status = services.GetRequiredService<LeadershipState>().Current;
        var time = services.GetRequiredService<TimeProvider>();

        context.Response.StatusCode = leaderOnly && !status.IsLeader
            ? StatusCodes.Status503ServiceUnavailable
            : StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        await JsonSerializer.SerializeAsync(context.Response.Body, StatusDocument.From(status, time), SurfaceJsonContext.Default.StatusDocument, context.RequestAborted);
    }
}
