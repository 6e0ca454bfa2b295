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

    public static StatusDocument From(LeadershipStatus status, TimeProvider time) => new()
    {
        Identity = status.Identity,
        Role = status.Role switch
        {
            Election.Role.Leader => "LEADER",
            Election.Role.Follower => "FOLLOWER",
            _ => "UNKNOWN",
        },
        Leader = status.IsLeader,
        Holder = status.Holder,
        Name = status.Holder,
        Term = status.Term,
        LeaseUid = status.LeaseUid,
        LeaseName = status.LeaseName,
        LeaseNamespace = status.LeaseNamespace,
        ValidUntil = status.ValidUntil?.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
        ObservedAgeSeconds = status.LastObservedAt is { } observed ? Math.Round(time.GetElapsedTime(observed).TotalSeconds, 3) : null,
        Revision = status.Revision,
    };
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
