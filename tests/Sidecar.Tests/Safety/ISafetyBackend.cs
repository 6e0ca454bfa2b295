using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// A lease store the safety suite runs on: it starts the store, gives each replica's daemon the
/// arguments that point it there, says which store and network faults it can inject, and injects
/// them. Process faults and wall-clock jumps are the cluster's and work on every store; the
/// history checker never knows which store ran.
/// </summary>
internal interface ISafetyBackend : IAsyncDisposable
{
    /// <summary>The backends, by the name <c>scripts/safety --backend</c> and <c>SAFETY_BACKEND</c> take.</summary>
    public static readonly string[] Names = ["kubernetes", "etcd", "file", "postgres", "mysql", "redis"];

    /// <summary>The store and network faults this backend injects, beyond the process faults and clock jumps.</summary>
    IReadOnlySet<FaultKind> Faults { get; }

    /// <summary>What <see cref="PutGarbageAsync"/> can write, one chosen per fault: values, or names of edits, that are not a lease record.</summary>
    IReadOnlyList<string> Garbage => HandEdit.Garbage;

    /// <summary>The daemon arguments that select this store for <paramref name="replica"/>.</summary>
    IEnumerable<string> Arguments(SafetyCluster.Replica replica);

    /// <summary>Injects one of <see cref="Faults"/> other than the hand edits, with its heal.</summary>
    Task InjectAsync(FaultKind kind, FaultRound round);

    /// <summary>Deletes the lease by hand; says what happened, for the timeline.</summary>
    Task<string> DeleteLeaseAsync();

    /// <summary>Rewrites the lease by hand to <paramref name="holder"/>, renewed now, with a new term or the old one.</summary>
    Task<string> RewriteLeaseAsync(string holder, bool newTerm);

    /// <summary>Puts <paramref name="garbage"/>, which is not a lease record, where the lease lives.</summary>
    Task<string> PutGarbageAsync(string garbage);

    /// <summary>Removes <paramref name="garbage"/> if it is still there, as an operator cleaning up would.</summary>
    Task<string> ClearGarbageAsync(string garbage);

    public static async Task<ISafetyBackend> StartAsync(string name, IReadOnlyList<SafetyCluster.Replica> replicas) => name switch
    {
        "kubernetes" => await KubernetesSafetyBackend.StartAsync(replicas),
        "etcd" => await EtcdSafetyBackend.StartAsync(replicas),
        "file" => new FileSafetyBackend(),
        "postgres" => await PostgresSafetyBackend.StartAsync(replicas),
        "mysql" => await MySqlSafetyBackend.StartAsync(replicas),
        "redis" => await RedisSafetyBackend.StartAsync(replicas),
        _ => throw new ArgumentException($"no safety backend \"{name}\" (use {string.Join(", ", Names)})", nameof(name)),
    };
}

/// <summary>What a hand edit writes, for the stores whose record is the Lease spec as JSON.</summary>
internal static class HandEdit
{
    /// <summary>Values that are not a lease record: not JSON, JSON null, not an object, a field of the wrong type.</summary>
    public static readonly string[] Garbage = ["not a lease record", "null", "[1,2,3]", """{"holderIdentity":42}"""];

    /// <summary>
    /// <paramref name="spec"/> (Kubernetes field names) rewritten to <paramref name="holder"/>,
    /// acquired and renewed now, with the suite's lease duration and a new term or the old one.
    /// </summary>
    public static void Rewrite(JsonObject spec, string holder, bool newTerm)
    {
        var now = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
        var term = spec["leaseTransitions"]?.GetValue<int>() ?? 0;
        spec["holderIdentity"] = holder;
        spec["leaseDurationSeconds"] = (int)SafetyCluster.LeaseDuration.TotalSeconds;
        spec["acquireTime"] = now;
        spec["renewTime"] = now;
        spec["leaseTransitions"] = term + (newTerm ? 1 : 0);
    }

    /// <summary>The JSON object in <paramref name="text"/>, or null when it is anything else.</summary>
    public static JsonObject? Parse(string text)
    {
        try
        {
            return JsonNode.Parse(text) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static string Rewritten(string holder, bool newTerm) =>
        $"lease rewritten to {holder}{(newTerm ? ", transitions + 1" : "")}";
}
