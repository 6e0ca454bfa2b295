namespace LeaderSidecar.Stores;

/// <summary>
/// Cancels a client library's request from a thread-pool work item, so that the caller's
/// cancellation never waits for the library. The library's own cancellation callbacks run inside
/// <see cref="CancellationTokenSource.Cancel()"/>; one that throws (a socket the server already
/// closed: "Transport endpoint is not connected") would otherwise be an unhandled exception on a
/// thread-pool thread, which ends the process. The request's own outcome is observed where it is
/// awaited.
/// </summary>
internal static class QuietCancel
{
    /// <summary>Cancels <paramref name="to"/> on the thread pool once <paramref name="from"/> is cancelled.</summary>
    public static CancellationTokenRegistration Forward(CancellationTokenSource to, CancellationToken from) =>
        from.UnsafeRegister(static source => ThreadPool.UnsafeQueueUserWorkItem(Cancel, (CancellationTokenSource)source!, preferLocal: false), to);

    /// <summary>Cancels <paramref name="source"/>; whatever its callbacks throw stays here.</summary>
    internal static void Cancel(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (Exception e) when (e is ObjectDisposedException or AggregateException)
        {
            // Disposed: the request finished meanwhile. Aggregate: a callback failed; the request
            // fails or ends on its own, and that is reported where it is awaited.
        }
    }
}
