namespace LeaderSidecar.Election;

/// <summary>
/// The leader-election record exactly as client-go's <c>leaderelection</c> stores it in a
/// <c>coordination.k8s.io/v1</c> Lease spec, so a Go candidate and this daemon can share one Lease.
/// </summary>
/// <param name="HolderIdentity">Who holds the lease; empty when released.</param>
/// <param name="LeaseDurationSeconds">How long observers must wait, on their own clock, after they
/// last saw this record change before they may take the lease.</param>
/// <param name="AcquireTime">When the current holder acquired (wall clock, informational).</param>
/// <param name="RenewTime">When the current holder last renewed (wall clock, informational: nobody
/// judges expiry by comparing it with their own wall clock).</param>
/// <param name="LeaseTransitions">How many times the holder has changed; the fencing term.</param>
public sealed record LeaseRecord(
    string HolderIdentity,
    int LeaseDurationSeconds,
    DateTimeOffset? AcquireTime,
    DateTimeOffset? RenewTime,
    int LeaseTransitions)
{
    /// <summary>
    /// The longest holder identity accepted, in characters: far above any pod or host name with a
    /// suffix (client-go uses <c>hostname_uuid</c>), far below what would hurt in a log line or a
    /// metric label. A longer identity is a start-up error; a longer holder read from a store
    /// makes that record invalid.
    /// </summary>
    public const int MaxHolderIdentityLength = 1024;

    /// <summary>True when no one holds the lease (never acquired, or released).</summary>
    public bool IsReleased => HolderIdentity.Length == 0;
}

/// <summary>
/// A record as read from a store at one version.
/// </summary>
/// <param name="Record">The election record.</param>
/// <param name="Version">Opaque compare-and-swap token (a Kubernetes <c>resourceVersion</c>).</param>
/// <param name="Uid">Identity of the stored object (<c>metadata.uid</c>): a deleted and re-created
/// lease has a new uid, so (uid, transitions) only ever grows as a fencing token.</param>
public sealed record LeaseSnapshot(LeaseRecord Record, string Version, string Uid)
{
    /// <summary>
    /// A request, stored beside the record, that the holder of one term hand the lease to a named
    /// candidate; <see langword="null"/> when there is none or the store does not carry such requests.
    /// </summary>
    public HandOverRequest? HandOver { get; init; }
}

/// <summary>
/// "Holder of term <paramref name="Term"/>: release the lease to <paramref name="Identity"/>."
/// Only meaningful while the lease is in that term (its <see cref="LeaseRecord.LeaseTransitions"/>):
/// once the term changes the request is void, which makes it one-shot.
/// </summary>
/// <param name="Identity">The candidate that should lead next.</param>
/// <param name="Term">The term whose holder is asked to hand over.</param>
public sealed record HandOverRequest(string Identity, int Term)
{
    /// <summary>Whether the request applies to <paramref name="record"/>: made for the term it is in.</summary>
    public bool AppliesTo(LeaseRecord record) => Term == record.LeaseTransitions;
}
