namespace LeaderSidecar.Election;

/// <summary>What the elector reports for metrics; the host maps it onto Prometheus.</summary>
public interface IElectionMetrics
{
    /// <summary>A lease-store request finished.</summary>
    /// <param name="verb"><c>get</c>, <c>create</c>, <c>update</c> or <c>watch</c>.</param>
    /// <param name="purpose"><c>acquire</c>, <c>renew</c>, <c>release</c> or <c>observe</c>.</param>
    /// <param name="failure">Why it failed; <see langword="null"/> on success.</param>
    /// <param name="duration">How long it took.</param>
    void RequestCompleted(string verb, string purpose, LeaseStoreFailure? failure, TimeSpan duration);

    /// <summary>The leader's fast-path renew conflicted and it re-read the lease (client-go's slow path).</summary>
    void SlowPath();

    /// <summary>The lease's term is at its maximum, so this candidate cannot take it with a new one.</summary>
    void TermExhausted();

    /// <summary>This leader stepped down and released because its <see cref="CampaignGate"/> closed.</summary>
    void StoodAside()
    {
    }
}

/// <summary>Discards everything.</summary>
public sealed class NullElectionMetrics : IElectionMetrics
{
    public static readonly NullElectionMetrics Instance = new();

    public void RequestCompleted(string verb, string purpose, LeaseStoreFailure? failure, TimeSpan duration)
    {
    }

    public void SlowPath()
    {
    }

    public void TermExhausted()
    {
    }
}
