namespace LeaderSidecar.Election;

/// <summary>
/// One immutable picture of leadership as this candidate knows it. The elector publishes it through
/// <see cref="LeadershipState"/>; every surface (HTTP, gRPC, file flag, metrics) only reads it.
/// </summary>
public sealed record LeadershipStatus
{
    /// <summary>This candidate's identity.</summary>
    public required string Identity { get; init; }

    /// <summary>This candidate's role.</summary>
    public required Role Role { get; init; }

    /// <summary>Current holder; empty when nobody holds the lease or the holder is unknown.</summary>
    public string Holder { get; init; } = "";

    /// <summary>
    /// Fencing term: the lease's <c>leaseTransitions</c> when the current holder acquired it.
    /// <see langword="null"/> when unknown. Compare together with <see cref="LeaseUid"/>.
    /// </summary>
    public long? Term { get; init; }

    /// <summary>The stored lease object's uid; a re-created lease restarts its term under a new uid.</summary>
    public string LeaseUid { get; init; } = "";

    /// <summary>Lease name.</summary>
    public required string LeaseName { get; init; }

    /// <summary>Lease namespace.</summary>
    public required string LeaseNamespace { get; init; }

    /// <summary>
    /// Leader only: the monotonic timestamp (of the elector's <see cref="TimeProvider"/>) at which this
    /// claim runs out unless renewed. <see cref="LeadershipState"/> demotes the status at that instant.
    /// </summary>
    public long? ClaimDeadline { get; init; }

    /// <summary>Leader only: <see cref="ClaimDeadline"/> as a wall-clock time, for apps and files.</summary>
    public DateTimeOffset? ValidUntil { get; init; }

    /// <summary>Monotonic timestamp of the last successful observation of the lease, if any.</summary>
    public long? LastObservedAt { get; init; }

    /// <summary>Increases by one with every change; assigned by <see cref="LeadershipState"/>.</summary>
    public long Revision { get; init; }

    /// <summary>True when this candidate is the leader.</summary>
    public bool IsLeader => Role == Role.Leader;

    /// <summary>
    /// Whether two statuses tell an app the same thing (everything but the revision and the
    /// observation time, which changes without anything else changing).
    /// </summary>
    public bool SameAs(LeadershipStatus other) =>
        this with { Revision = 0, LastObservedAt = null } == other with { Revision = 0, LastObservedAt = null };
}
