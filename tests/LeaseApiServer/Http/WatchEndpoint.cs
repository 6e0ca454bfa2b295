using System.Globalization;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Storage;
using Microsoft.AspNetCore.Http;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// <c>GET .../leases?watch=true</c>: a chunked 200 whose body is one JSON event a line. Headers go out at once
/// (as kube-apiserver flushes them before the first event); the stream ends cleanly at
/// <c>timeoutSeconds</c>, when the server stops, or when a test drops it.
/// </summary>
internal sealed class WatchEndpoint(LeaseStore store, FaultInjector faults, TimeSpan defaultTimeout, CancellationToken stopping)
{
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    public async Task ServeAsync(HttpContext context, ApiRoute route)
    {
        var query = context.Request.Query;
        long? since = null;
        if (query["resourceVersion"].ToString() is { Length: > 0 } rv)
        {
            if (!long.TryParse(rv, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                await LeaseApiHandler.WriteStatusAsync(context, LeaseStatuses.BadRequest($"invalid resource version: {rv}"));
                return;
            }

            since = parsed;
        }

        var timeout = int.TryParse(query["timeoutSeconds"], CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(seconds)
            : defaultTimeout;
        var bookmarks = query["allowWatchBookmarks"].ToString().ToUpperInvariant() is "TRUE" or "1" or "T";

        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "application/json";
        await response.StartAsync(context.RequestAborted);
        await response.Body.FlushAsync(context.RequestAborted);

        if (faults.EndlessLineFor(route.Token, route.AuthorizedName) is { } endless)
        {
            await WriteEndlessLineAsync(context, endless);
            return;
        }

        var start = store.Watch(route.Namespace, since);
        if (start.Expired)
        {
            await WriteLineAsync(context, route, ApiJson.WatchError(
                LeaseStatuses.TooOldResourceVersion(start.RequestedRevision, start.CompactedRevision)));
            return;
        }

        using var subscription = start.Subscription!;
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        ending.CancelAfter(timeout);
        try
        {
            foreach (var change in start.InitialEvents.Where(change => Selects(route, change.Lease)))
            {
                await WriteLineAsync(context, route, ApiJson.WatchEvent(change), ending.Token);
            }

            await foreach (var signal in subscription.Signals.ReadAllAsync(ending.Token))
            {
                switch (signal)
                {
                    case WatchSignal.Change { Event: var change }:
                        subscription.LastRevision = change.Revision;
                        if (Selects(route, change.Lease))
                        {
                            await WriteLineAsync(context, route, ApiJson.WatchEvent(change), ending.Token);
                        }

                        break;

                    case WatchSignal.Bookmark when bookmarks:
                        await WriteLineAsync(context, route, ApiJson.WatchBookmark(subscription.LastRevision), ending.Token);
                        break;

                    case WatchSignal.Drop drop:
                        if (drop.Expire)
                        {
                            await WriteLineAsync(context, route, ApiJson.WatchError(LeaseStatuses.WatchExpired()), ending.Token);
                        }

                        if (drop.Abort)
                        {
                            context.Abort();
                        }

                        return;
                }
            }
        }
        catch (OperationCanceledException) when (ending.IsCancellationRequested)
        {
            // Timeout, server stopping or client gone: the response simply ends.
        }
    }

    /// <summary>The start of an event, then filler with no newline, then silence until the client leaves.</summary>
    private async Task WriteEndlessLineAsync(HttpContext context, long bytes)
    {
        var body = context.Response.Body;
        var chunk = new byte[64 * 1024];
        chunk.AsSpan().Fill((byte)'x');
        var start = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\""u8.ToArray();
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        try
        {
            await body.WriteAsync(start, ending.Token);
            faults.CountEndlessLineBytes(start.Length);
            for (var sent = (long)start.Length; sent < bytes;)
            {
                var size = (int)Math.Min(chunk.Length, bytes - sent);
                await body.WriteAsync(chunk.AsMemory(0, size), ending.Token);
                await body.FlushAsync(ending.Token);
                faults.CountEndlessLineBytes(size);
                sent += size;
            }

            await Task.Delay(Timeout.Infinite, ending.Token);
        }
        catch (OperationCanceledException) when (ending.IsCancellationRequested)
        {
            // The client gave up on the line, or the server is stopping.
        }
        catch (IOException)
        {
            // The connection is gone.
        }
    }

    private static bool Selects(ApiRoute route, Lease lease) => route.Fields.Matches(lease) && route.Labels.Matches(lease);

    private async Task WriteLineAsync(HttpContext context, ApiRoute route, byte[] json, CancellationToken cancellationToken = default)
    {
        // A partitioned client stops receiving, mid-stream, for as long as its requests hang.
        await faults.WaitWhileHungAsync(ApiVerb.Watch, route.Token, route.AuthorizedName, cancellationToken);
        var body = context.Response.Body;
        await body.WriteAsync(json, cancellationToken);
        await body.WriteAsync(NewLine, cancellationToken);
        await body.FlushAsync(cancellationToken);
    }
}
