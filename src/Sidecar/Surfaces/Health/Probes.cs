using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces.Health;

/// <summary>
/// Liveness and readiness, shared by <c>GET /healthz</c>, <c>GET /readyz</c> and
/// <c>grpc.health.v1.Health</c>.
/// </summary>
internal sealed class Probes(LeadershipState state, LeaderElector elector, ElectionOptions options, Drain drain, TimeProvider time)
{
    /// <summary>
    /// A step of the election loop makes at most three lease-store requests (renew, re-read after a
    /// conflict, retry), each bounded by the request timeout (half the renew deadline). A step busy
    /// for three renew deadlines is therefore stuck, not slow.
    /// </summary>
    public TimeSpan WedgedAfter => options.RenewDeadline * 3;

    /// <summary>
    /// <see langword="null"/> while the process works, else why it is wedged. Fails only for what a
    /// restart cures: an outage of the lease store is not a liveness failure (the loop keeps
    /// cycling through timeouts), so a cluster-wide API problem never restarts every replica.
    /// </summary>
    public string? Liveness()
    {
        // During the shutdown drain the loop waits for the app on purpose.
        var busy = elector.BusyFor;
        if (!drain.Draining && busy > WedgedAfter)
        {
            return $"the election loop has been stuck in one step for {busy.TotalSeconds:0.#}s (limit {WedgedAfter.TotalSeconds:0.#}s)";
        }

        // LeadershipState demotes an expired claim on every read; this only catches a broken clock
        // or a bug in that rule, which is exactly what a liveness probe is for.
        var status = state.Current;
        if (status.IsLeader && status.ClaimDeadline is { } deadline && time.GetTimestamp() >= deadline)
        {
            return "claims leadership past its deadline";
        }

        return null;
    }

    /// <summary><see langword="null"/> once the lease has been observed successfully, else why not ready.</summary>
    public string? Readiness() =>
        state.Current.LastObservedAt is null ? "the lease has not been observed yet" : null;
}
