using System.Globalization;
using System.Text;
using System.Text.Json;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Grpc;
using Microsoft.AspNetCore.Http.Features;

namespace LeaderSidecar.Surfaces.Http;

/// <summary>
/// <c>GET /watch</c>: the status as server-sent events (<c>text/event-stream</c>), for
/// <c>curl -N</c> and a browser's <c>EventSource</c>. The same stream as gRPC <c>Watch</c>: the
/// current status first, then one event per change in revision order, latest-wins for a slow
/// reader, counted against the same limit of open streams, carrying the step-down before a release,
/// and ending with the final status when the sidecar shuts down.
/// </summary>
/// <remarks>
/// Each event is <c>id: REVISION</c> and one <c>data:</c> line with the JSON status of
/// <c>/status</c>. A client that reconnects with <c>Last-Event-ID</c> equal to the current revision
/// already has the current status and is not sent it again. A comment (<c>: ping</c>) goes out
/// after <see cref="HeartbeatInterval"/> without an event, so proxies and load balancers do not
/// close an idle stream.
/// </remarks>
internal static class WatchEvents
{
    /// <summary>How long a stream may go without an event before a comment is sent to keep it open.</summary>
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromSeconds(15);

    public const string ContentType = "text/event-stream";

    private static readonly byte[] Heartbeat = ": ping\n\n"u8.ToArray();

    public static async Task StreamAsync(HttpContext context)
    {
        var services = context.RequestServices;
        var state = services.GetRequiredService<LeadershipState>();
        var drain = services.GetRequiredService<Drain>();
        var time = services.GetRequiredService<TimeProvider>();
        using var open = services.GetRequiredService<WatchStreams>().TryOpen(WatchSurface.Http);
        var response = context.Response;
        if (open is null)
        {
            response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            response.ContentType = "application/json";
            response.Headers.RetryAfter = "10";
            await JsonSerializer.SerializeAsync(response.Body, new ErrorDocument { Error = $"{WatchStreams.MaxOpen} watch streams are open already; try again later" }, SurfaceJsonContext.Default.ErrorDocument, context.RequestAborted);
            return;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = ContentType;
        response.Headers.CacheControl = "no-cache";
        // nginx buffers proxied responses unless told not to; an event must arrive when it happens.
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        // The headers go out now, not with the first event: a client resuming at the current
        // revision gets no event until the next change, and an EventSource opens at once.
        await response.StartAsync(context.RequestAborted);
        await response.Body.FlushAsync(context.RequestAborted);

        using var ends = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, drain.Closing);
        var sent = LastEventId(context.Request);
        try
        {
            var status = state.Current;
            if (status.Revision != sent)
            {
                await WriteAsync(response, status, time, ends.Token);
            }

            sent = status.Revision;
            open.Wrote(sent);
            while (true)
            {
                using var quiet = new CancellationTokenSource(HeartbeatInterval, time);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(quiet.Token, ends.Token);
                try
                {
                    status = await state.WaitForChangeAsync(sent, wait.Token);
                }
                catch (OperationCanceledException) when (quiet.IsCancellationRequested && !ends.IsCancellationRequested)
                {
                    await response.Body.WriteAsync(Heartbeat, ends.Token);
                    await response.Body.FlushAsync(ends.Token);
                    continue;
                }

                await WriteAsync(response, status, time, ends.Token);
                sent = status.Revision;
                open.Wrote(sent);
            }
        }
        catch (OperationCanceledException) when (drain.Closing.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
        {
            // The sidecar is shutting down after the release: send the final status, then end.
            await open.WriteFinalAsync(state.Current, (last, ct) => WriteAsync(response, last, time, ct), time, context.RequestAborted);
        }
    }

    /// <summary>One event: the revision as its id, the JSON status (one line) as its data.</summary>
    private static async Task WriteAsync(HttpResponse response, LeadershipStatus status, TimeProvider time, CancellationToken cancellationToken)
    {
        // The serializer escapes control characters, so the JSON is one line, as a data: field must be.
        var json = JsonSerializer.SerializeToUtf8Bytes(StatusDocument.From(status, time), SurfaceJsonContext.Default.StatusDocument);
        byte[] line = [.. Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"id: {status.Revision}\ndata: ")), .. json, .. "\n\n"u8];
        await response.Body.WriteAsync(line, cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>The revision the client last received (<c>Last-Event-ID</c>), or 0 when none or not ours.</summary>
    private static long LastEventId(HttpRequest request) =>
        request.Headers["Last-Event-ID"] is [{ } value] && long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : 0;
}
