namespace LeaderSidecar.Election;

/// <summary>What this candidate may tell its app.</summary>
public enum Role
{
    /// <summary>Starting, or the lease cannot be observed, so the holder is not known.</summary>
    Unknown,

    /// <summary>Another candidate holds the lease, or nobody does; this one must not act as leader.</summary>
    Follower,

    /// <summary>This candidate holds the lease and its claim has not run out.</summary>
    Leader,
}
