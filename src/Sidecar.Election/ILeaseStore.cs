namespace LeaderSidecar.Election;

/// <summary>
/// Where one lease lives. The election algorithm is written once against this interface and never
/// knows whether it talks to a Kubernetes Lease, a local file or anything else.
/// </summary>
/// <remarks>
/// <para>
/// Implementations report failures as <see cref="LeaseStoreException"/> with a
/// <see cref="LeaseStoreFailure"/> reason; a lost compare-and-swap is
/// <see cref="LeaseStoreFailure.Conflict"/>. Cancellation of the token must abandon the request
/// promptly: the elector uses it to enforce its request timeout and renew deadline.
/// </para>
/// <para>
/// Followers judge a holder alive by seeing its record change: a new version or other content. A
/// store whose versions can repeat with other content (a failover to a replica that missed
/// writes, a restored snapshot) must make every write distinguishable, for example with a random
/// nonce in each record. Every read is bounded in size: an oversized record is
/// <see cref="LeaseStoreFailure.Invalid"/>, never buffered whole.
/// </para>
/// <para>
/// A store may carry a <see cref="LeaseSnapshot.HandOver"/> request that an operator set beside
/// the record (the Kubernetes store: an annotation). Such a store keeps the request across an
/// update that keeps the term (a renew, a release) and drops it in an update that starts a new term
/// (an acquisition), so whoever takes the lease next clears it. Stores that do not carry requests
/// leave it <see langword="null"/>.
/// </para>
/// </remarks>
public interface ILeaseStore
{
    /// <summary>What and where the lease is, for logs (for example <c>file /run/x/default_app.json</c>).</summary>
    string Description { get; }

    /// <summary>Reads the lease; <see langword="null"/> when it does not exist.</summary>
    Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken);

    /// <summary>Creates the lease; <see cref="LeaseStoreFailure.Conflict"/> if it already exists.</summary>
    Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken);

    /// <summary>
    /// Replaces the lease if it is still at <paramref name="current"/>'s version (compare-and-swap);
    /// <see cref="LeaseStoreFailure.Conflict"/> if someone else wrote it first.
    /// </summary>
    Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken);

    /// <summary>
    /// Streams the lease: first its current state, then every change, <see langword="null"/> meaning
    /// "does not exist". The first item means the watch is established: yield it only once changes
    /// will follow. The stream ends or throws when the connection is lost; the caller reconnects
    /// with backoff and polls meanwhile, so implementations should not retry forever internally.
    /// </summary>
    IAsyncEnumerable<LeaseSnapshot?> WatchAsync(CancellationToken cancellationToken);
}
