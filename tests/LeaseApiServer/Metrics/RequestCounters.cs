using System.Collections.Concurrent;

namespace LeaderSidecar.Testing.LeaseApi.Metrics;

/// <summary>
/// Requests received, by verb and by bearer token, counted on arrival (before faults and auth, so refused
/// and failed requests count too). For load assertions ("followers do not poll") and benchmarks.
/// </summary>
public sealed class RequestCounters
{
    private readonly ConcurrentDictionary<(ApiVerb Verb, string Token), long> _counts = new();

    /// <summary>All requests of a verb.</summary>
    public long this[ApiVerb verb] => _counts.Where(pair => pair.Key.Verb == verb).Sum(pair => pair.Value);

    /// <summary>Requests of a verb sent with one token (<c>""</c> for none).</summary>
    public long this[ApiVerb verb, string token] => _counts.GetValueOrDefault((verb, token));

    public long Total => _counts.Values.Sum();

    /// <summary>Requests sent with one token, all verbs.</summary>
    public long ForToken(string token) => _counts.Where(pair => pair.Key.Token == token).Sum(pair => pair.Value);

    public void Reset() => _counts.Clear();

    internal void Record(ApiVerb verb, string? token) =>
        _counts.AddOrUpdate((verb, token ?? ""), 1, (_, count) => count + 1);
}
