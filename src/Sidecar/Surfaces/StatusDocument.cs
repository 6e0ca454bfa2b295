using System.Globalization;
using System.Text.Json.Serialization;
using LeaderSidecar.Election;

namespace LeaderSidecar.Surfaces;

/// <summary>
/// The JSON shape of a <see cref="LeadershipStatus"/>, shared by every JSON surface (HTTP, file
/// flag). Field names are public interface. The gRPC surface's twin is <c>Grpc/StatusMessage.cs</c>.
/// </summary>
internal sealed record StatusDocument
{
    /// <summary>This replica's identity.</summary>
    public required string Identity { get; init; }

    /// <summary><c>LEADER</c>, <c>FOLLOWER</c> or <c>UNKNOWN</c>.</summary>
    public required string Role { get; init; }

    /// <summary>Whether this replica leads right now.</summary>
    public required bool Leader { get; init; }

    /// <summary>Current holder; empty when nobody holds the lease or it is unknown.</summary>
    public required string Holder { get; init; }

    /// <summary>The holder again, as the classic <c>leader-elector</c> sidecar answered <c>{"name": ...}</c>.</summary>
    public required string Name { get; init; }

    /// <summary>Fencing term: <c>leaseTransitions</c> when the holder acquired; null when unknown.</summary>
    public required long? Term { get; init; }

    /// <summary>Uid of the lease object; compare terms only under the same uid.</summary>
    public required string LeaseUid { get; init; }

    public required string LeaseName { get; init; }

    public required string LeaseNamespace { get; init; }

    /// <summary>Leader only: wall-clock time (RFC 3339, UTC) when this claim runs out unless renewed.</summary>
    public required string? ValidUntil { get; init; }

    /// <summary>Seconds since the lease was last observed successfully; null before the first observation.</summary>
    public required double? ObservedAgeSeconds { get; init; }

    /// <summary>Grows by one with every status change.</summary>
    public required long Revision { get; init; }

    /// <summary>The document of <paramref name="status"/>; every text taken from the lease is cut to <see cref="SurfaceText.MaxLength"/>.</summary>
    public static StatusDocument From(LeadershipStatus status, TimeProvider time) => new()
    {
        Identity = SurfaceText.Bound(status.Identity),
        Role = status.Role switch
        {
            Election.Role.Leader => "LEADER",
            Election.Role.Follower => "FOLLOWER",
            _ => "UNKNOWN",
        },
        Leader = status.IsLeader,
        Holder = SurfaceText.Bound(status.Holder),
        Name = SurfaceText.Bound(status.Holder),
        Term = status.Term,
        LeaseUid = SurfaceText.Bound(status.LeaseUid),
        LeaseName = SurfaceText.Bound(status.LeaseName),
        LeaseNamespace = SurfaceText.Bound(status.LeaseNamespace),
        ValidUntil = status.ValidUntil?.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        ObservedAgeSeconds = status.LastObservedAt is { } observed ? Math.Round(time.GetElapsedTime(observed).TotalSeconds, 3) : null,
        Revision = status.Revision,
    };
}

/// <summary>
/// The bound on text a surface repeats from the lease record or a peer (the holder above all):
/// whatever a record holds, a status body, a metric label or a log field stays small. The election
/// core refuses longer holders anyway; this keeps the surfaces safe on their own.
/// </summary>
internal static class SurfaceText
{
    /// <summary>The election core's own limit on <c>holderIdentity</c>, so a valid holder is never cut.</summary>
    public const int MaxLength = 1024;

    private const string Cut = "...";

    /// <summary><paramref name="value"/> itself, or its start and "..." in <see cref="MaxLength"/> characters.</summary>
    public static string Bound(string value)
    {
        if (value.Length <= MaxLength)
        {
            return value;
        }

        // Never split a surrogate pair: half of one is not valid UTF-16.
        var keep = MaxLength - Cut.Length;
        if (char.IsHighSurrogate(value[keep - 1]))
        {
            keep--;
        }

        return string.Concat(value.AsSpan(0, keep), Cut);
    }
}

/// <summary>The answer of <c>/healthz</c> and <c>/readyz</c>.</summary>
internal sealed record ProbeDocument
{
    /// <summary><c>ok</c> or <c>failing</c>.</summary>
    public required string Status { get; init; }

    /// <summary>Why the probe fails; absent when it passes.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reason { get; init; }
}

/// <summary>A one-line error, for requests the surface cannot answer (400).</summary>
internal sealed record ErrorDocument
{
    public required string Error { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(StatusDocument))]
[JsonSerializable(typeof(ProbeDocument))]
[JsonSerializable(typeof(ErrorDocument))]
internal sealed partial class SurfaceJsonContext : JsonSerializerContext;
