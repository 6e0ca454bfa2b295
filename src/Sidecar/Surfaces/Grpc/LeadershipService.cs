using Grpc.Core;
using Leadership.V1;
using LeaderSidecar.Election;
using RpcStatus = Grpc.Core.Status;

namespace LeaderSidecar.Surfaces.Grpc;

/// <summary>
/// <c>leadership.v1.Leadership</c>: status, the watch stream, resign, and the drain confirmation.
/// Every answer is read from <see cref="LeadershipState"/>; this service never decides leadership.
/// </summary>
internal sealed class LeadershipService(
    LeadershipState state,
    LeaderElector elector,
    Drain drain,
    WatchStreams streams,
    ControlAccess access,
    TimeProvider time) : Leadership.V1.Leadership.LeadershipBase
{
    /// <summary>
    /// The longest hold-off a Resign may ask for. Long enough to move leadership away for a
    /// maintenance window, short enough that a mistaken (or hostile) call cannot leave a replica
    /// out of the election for a day; ask again to extend it.
    /// </summary>
    public static readonly TimeSpan MaxHoldOff = TimeSpan.FromHours(1);

    public override Task<Leadership.V1.Status> GetStatus(GetStatusRequest request, ServerCallContext context) =>
        Task.FromResult(StatusMessage.From(state.Current, drain.Draining, time));

    /// <summary>
    /// Pulls from <see cref="LeadershipState.WatchAsync"/>, which hands a slow reader the newest
    /// status when it comes back for more: a stream that does not drain holds up only itself.
    /// </summary>
    public override async Task Watch(WatchRequest request, IServerStreamWriter<Leadership.V1.Status> responseStream, ServerCallContext context)
    {
        using var open = streams.TryOpen(WatchSurface.Grpc)
            ?? throw new RpcException(new RpcStatus(StatusCode.ResourceExhausted, $"{WatchStreams.MaxOpen} Watch streams are open already; try again later"));
        using var ends = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, drain.Closing);
        // A write under way when the server starts closing gets the final write's grace to finish:
        // cancelled mid-message it would reset the stream, and the status on its way (the release,
        // at shutdown) would be lost with it.
        using var grace = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        using var writes = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, grace.Token);
        using var closing = drain.Closing.Register(static g => ((CancellationTokenSource)g!).CancelAfter(WatchStreams.FinalWriteTimeout), grace);
        try
        {
            await foreach (var status in state.WatchAsync(ends.Token))
            {
                await responseStream.WriteAsync(StatusMessage.From(status, drain.Draining, time), writes.Token);
                open.Wrote(status.Revision);
            }
        }
        catch (OperationCanceledException) when (drain.Closing.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            // The sidecar is shutting down after the release: send the final status, then end.
            await open.WriteFinalAsync(state.Current, (last, ct) => responseStream.WriteAsync(StatusMessage.From(last, drain.Draining, time), ct), time, context.CancellationToken);
        }
    }

    public override async Task<ResignResponse> Resign(ResignRequest request, ServerCallContext context)
    {
        access.Demand(context, "Resign");
        TimeSpan holdOff;
        try
        {
            holdOff = request.HoldOff?.ToTimeSpan() ?? TimeSpan.Zero;
        }
        catch (InvalidOperationException e)
        {
            throw new RpcException(new RpcStatus(StatusCode.InvalidArgument, $"invalid hold_off: {e.Message}"));
        }

        if (holdOff < TimeSpan.Zero || holdOff > MaxHoldOff)
        {
            throw new RpcException(new RpcStatus(StatusCode.InvalidArgument, $"hold_off must be between 0 and {Configuration.GoDuration.Format(MaxHoldOff)} (got {Configuration.GoDuration.Format(holdOff)})"));
        }

        if (drain.Draining)
        {
            throw new RpcException(new RpcStatus(StatusCode.FailedPrecondition, "the sidecar is shutting down and releases the lease anyway"));
        }

        await elector.ResignAsync(holdOff, drain.DeliverStepDownAsync, context.CancellationToken);
        return new ResignResponse { Status = StatusMessage.From(state.Current, drain.Draining, time) };
    }

    /// <summary>Ends a shutdown drain: the release then comes at once, so this too changes leadership.</summary>
    public override Task<ConfirmStoppedResponse> ConfirmStopped(ConfirmStoppedRequest request, ServerCallContext context)
    {
        access.Demand(context, "ConfirmStopped");
        return Task.FromResult(new ConfirmStoppedResponse { DrainEnded = drain.Confirm() });
    }
}
