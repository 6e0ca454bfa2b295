using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Exec;
using LeaderSidecar.Surfaces.Grpc;
using LeaderSidecar.Surfaces.LeaderFile;

namespace LeaderSidecar.Surfaces;

/// <summary>
/// The hand-over at shutdown (<c>--drain-timeout</c>). Between stepping down and releasing the
/// lease, the elector awaits <see cref="WaitAsync"/>: once the exec-mode COMMAND has exited and the
/// leader file is gone, it returns when the app confirms over gRPC that it stopped its leader work,
/// when no app is watching any more, or when the drain timeout passes. Then the lease is released and <see cref="Close"/> ends the streams and long polls that
/// would otherwise keep the server from stopping.
/// </summary>
/// <remarks>
/// Only apps that keep a <c>Watch</c> stream open are waited for: with none open there is nobody
/// to confirm, and an app that closed its stream (or exited) is not doing leader work. The lease is
/// not renewed during the wait, so followers take it when it expires anyway; a drain timeout
/// longer than the lease duration cannot hold them off.
/// </remarks>
internal sealed partial class Drain(TimeSpan timeout, LeadershipState state, WatchStreams streams, TimeProvider time, ILogger<Drain> logger, LeaderFileFlag? leaderFile = null, LeaderCommand? command = null) : IDisposable
{
    /// <summary>How long the release waits for a <c>Watch</c> stream that does not take the step-down.</summary>
    public static readonly TimeSpan StepDownDeliveryTimeout = TimeSpan.FromSeconds(1);

    private readonly TaskCompletionSource _confirmed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _closing = new();
    private volatile bool _draining;

    /// <summary>The longest wait for the app.</summary>
    public TimeSpan Timeout => timeout;

    /// <summary>True from the start of the shutdown on; reported to gRPC clients.</summary>
    public bool Draining => _draining;

    /// <summary>Cancelled once the lease is released (or given up on): streams and long polls end.</summary>
    public CancellationToken Closing => _closing.Token;

    /// <summary>
    /// Marks the start of the shutdown. Called before the elector steps down, so the first status
    /// that says "not leader" already says "draining", and a confirmation sent in reply counts.
    /// </summary>
    public void Begin() => _draining = true;

    /// <summary>The app says it stopped its leader work. True when this ended (or will end) a drain.</summary>
    public bool Confirm() => _draining && _confirmed.TrySetResult();

    /// <summary>Waits for the app, as described on the class. Never throws but for <paramref name="cancellationToken"/>.</summary>
    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        await LeaderWorkEndedAsync(cancellationToken);
        var status = state.Current;
        if (status.Holder != status.Identity)
        {
            // This replica does not hold the lease: nothing to hand over.
            return;
        }

        await DeliverStepDownAsync(status.Revision, cancellationToken);
        if (timeout <= TimeSpan.Zero)
        {
            return;
        }

        var watching = streams.Count;
        if (watching == 0)
        {
            LogNobodyWatching(logger);
            return;
        }

        LogDraining(logger, Configuration.GoDuration.Format(timeout), watching);
        using var deadline = new CancellationTokenSource(timeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken);
        var expired = Task.Delay(System.Threading.Timeout.InfiniteTimeSpan, time, linked.Token);
        var ended = await Task.WhenAny(_confirmed.Task, streams.WhenNoneAsync(linked.Token), expired);
        await linked.CancelAsync();
        cancellationToken.ThrowIfCancellationRequested();
        var reason = ended == _confirmed.Task ? "the app confirmed it stopped"
            : ended == expired ? "the drain timeout passed"
            : "no app is watching any more";
        LogDrained(logger, reason);
    }

    /// <summary>
    /// Waits until every <c>Watch</c> stream has the current, stepped-down status on the wire (at
    /// most <see cref="StepDownDeliveryTimeout"/>); a <c>Resign</c> awaits it before its release.
    /// </summary>
    public async Task DeliverStepDownAsync(CancellationToken cancellationToken)
    {
        await LeaderWorkEndedAsync(cancellationToken);
        await DeliverStepDownAsync(state.Current.Revision, cancellationToken);
    }

    /// <summary>
    /// Before a release lets another replica lead, what this one did as leader must have ended: the
    /// exec-mode COMMAND has exited (bounded by its grace), and the leader file, written off the
    /// election's path, is removed (bounded by the claim it was written with).
    /// </summary>
    private async Task LeaderWorkEndedAsync(CancellationToken cancellationToken)
    {
        if (command is not null)
        {
            await command.WaitStoppedAsync(cancellationToken);
        }

        if (leaderFile is not null)
        {
            await leaderFile.WaitRemovedAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Even without a drain, every <c>Watch</c> stream gets the step-down onto the wire before the
    /// release lets another replica lead, so an app watching several replicas never sees two
    /// leaders at once. A client that does not read can hold this up only briefly.
    /// </summary>
    private async Task DeliverStepDownAsync(long revision, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(StepDownDeliveryTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken);
        try
        {
            await streams.WhenDeliveredAsync(revision, linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            LogStepDownUndelivered(logger, StepDownDeliveryTimeout.TotalMilliseconds);
        }
    }

    /// <summary>Ends open streams and long polls; called once the lease is released.</summary>
    public void Close() => _closing.Cancel();

    public void Dispose() => _closing.Dispose();

    [LoggerMessage(EventId = 500, EventName = "Draining", Level = LogLevel.Information,
        Message = "Stepped down; waiting up to {DrainTimeout} for the app to confirm it stopped ({Streams} watch streams open) before releasing")]
    private static partial void LogDraining(ILogger logger, string drainTimeout, int streams);

    [LoggerMessage(EventId = 501, EventName = "Drained", Level = LogLevel.Information,
        Message = "Drain ended: {Reason}; releasing the lease")]
    private static partial void LogDrained(ILogger logger, string reason);

    [LoggerMessage(EventId = 503, EventName = "StepDownUndelivered", Level = LogLevel.Warning,
        Message = "A watch stream did not take the step-down within {TimeoutMs} ms (its client does not read); releasing anyway")]
    private static partial void LogStepDownUndelivered(ILogger logger, double timeoutMs);

    [LoggerMessage(EventId = 502, EventName = "NobodyWatching", Level = LogLevel.Information,
        Message = "Stepped down; no app watches over gRPC, so the lease is released without waiting")]
    private static partial void LogNobodyWatching(ILogger logger);
}
