namespace LeaderSidecar.Election;

/// <summary>
/// Timing and identity of one candidate. The defaults and the validation rule are client-go's, so a
/// Go controller and this daemon configured alike behave alike on the same lease.
/// </summary>
public sealed record ElectionOptions
{
    /// <summary>
    /// This candidate's identity, written to <c>holderIdentity</c>. It must be unique among the
    /// candidates: two processes with one identity would both believe they hold the lease.
    /// </summary>
    public required string Identity { get; init; }

    /// <summary>Lease name, for the published status.</summary>
    public required string LeaseName { get; init; }

    /// <summary>Lease namespace, for the published status.</summary>
    public string LeaseNamespace { get; init; } = "default";

    /// <summary>
    /// How long followers wait, measured on their own monotonic clock from the moment they last saw
    /// the record change, before they may take the lease (default 15 s). It bounds the failover time
    /// after a crash, so keep it short; it must exceed <see cref="RenewDeadline"/> by enough to absorb
    /// the difference in clock rates between the leader and the followers.
    /// </summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long the leader keeps claiming leadership without a successful renew, measured from the
    /// start of its last successful renew request (default 10 s). When it passes, every surface stops
    /// saying "leader" and any in-flight renew is cancelled.
    /// </summary>
    public TimeSpan RenewDeadline { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How often the leader renews, and how often a candidate retries after a failure or polls while
    /// its watch is down (default 2 s).
    /// </summary>
    public TimeSpan RetryPeriod { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Upper bound of every lease-store request. Derived, not configured: half the renew deadline, so
    /// a renew that hangs is abandoned early enough to be retried before the deadline.
    /// </summary>
    public TimeSpan RequestTimeout => RenewDeadline / 2;

    /// <summary>
    /// Whether this candidate campaigns at all (default true). An observer (false) never writes the
    /// lease: it watches it and publishes the holder like any follower, so it can report and be
    /// monitored without ever leading.
    /// </summary>
    public bool Campaign { get; init; } = true;

    /// <summary>
    /// How much longer than others this candidate waits before taking a free or expired lease
    /// (default zero), so that undelayed candidates win: preferred replicas, or the new pods of a
    /// rolling update over the old ones. It never delays renewing a lease this candidate holds.
    /// </summary>
    public TimeSpan CampaignDelay { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// A leader whose <see cref="CampaignGate"/> closes stands aside (releases the lease) at most once
    /// in this interval (four lease durations, 1 min by default), so a flapping health check cannot
    /// make leadership flap: within the interval it keeps leading, unfit or not.
    /// </summary>
    public TimeSpan StandAsideInterval => LeaseDuration * 4;

    /// <summary>
    /// Checks client-go's rule <c>leaseDuration &gt; renewDeadline &gt; 1.2 × retryPeriod &gt; 0</c>.
    /// </summary>
    /// <returns><see langword="null"/> when valid, else one line naming the problem.</returns>
    public string? Validate()
    {
        if (string.IsNullOrWhiteSpace(Identity))
        {
            return "identity must not be empty";
        }

        if (Identity.Length > LeaseRecord.MaxHolderIdentityLength)
        {
            return $"identity must be at most {LeaseRecord.MaxHolderIdentityLength} characters (got {Identity.Length})";
        }

        if (RetryPeriod <= TimeSpan.Zero)
        {
            return $"retry period must be greater than zero (got {Format(RetryPeriod)})";
        }

        if (RenewDeadline <= RetryPeriod * 1.2)
        {
            return $"renew deadline ({Format(RenewDeadline)}) must be greater than 1.2 × retry period ({Format(RetryPeriod * 1.2)})";
        }

        if (LeaseDuration <= RenewDeadline)
        {
            return $"lease duration ({Format(LeaseDuration)}) must be greater than renew deadline ({Format(RenewDeadline)})";
        }

        if (LeaseDuration.TotalSeconds > int.MaxValue || LeaseDuration.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            // The Lease stores whole seconds; a fractional duration would silently be rounded for the
            // followers while this candidate kept its own, different idea of it.
            return $"lease duration must be a whole number of seconds (got {Format(LeaseDuration)})";
        }

        if (CampaignDelay < TimeSpan.Zero)
        {
            return $"campaign delay must not be negative (got {Format(CampaignDelay)})";
        }

        return null;
    }

    private static string Format(TimeSpan value) =>
        value.TotalSeconds >= 1 ? $"{value.TotalSeconds:0.###}s" : $"{value.TotalMilliseconds:0.###}ms";
}
