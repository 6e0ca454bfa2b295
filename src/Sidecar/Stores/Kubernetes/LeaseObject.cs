using System.Text.Json;
using System.Text.Json.Serialization;

namespace LeaderSidecar.Stores.Kubernetes;

// The few shapes of coordination.k8s.io/v1 the store reads and writes, with their own source-
// generated serializer. The client library's serializer would do, but it roots every Kubernetes
// model in the native binary (about 16 MB of a 28 MB binary); these four calls need five types.
// Only the fields the election reads are typed. Everything else in metadata and spec is kept as it
// came (extension data), so an update sends back labels, annotations, owner references and newer
// spec fields (strategy, preferredHolder) untouched, as client-go does.

/// <summary>A Lease object.</summary>
internal sealed class LeaseObject
{
    public string? ApiVersion { get; set; }

    public string? Kind { get; set; }

    public ObjectMetadata? Metadata { get; set; }

    public LeaseObjectSpec? Spec { get; set; }
}

/// <summary>The object metadata the store needs; the rest rides along.</summary>
internal sealed class ObjectMetadata
{
    public string? Name { get; set; }

    public string? Namespace { get; set; }

    public string? Uid { get; set; }

    public string? ResourceVersion { get; set; }

    /// <summary>Typed because the store reads one (<see cref="HandOverAnnotation"/>); all are written back.</summary>
    public Dictionary<string, string>? Annotations { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Other { get; set; }
}

/// <summary><c>LeaseSpec</c>; times are MicroTime (RFC 3339, six fractional digits, as the server requires).</summary>
internal sealed class LeaseObjectSpec
{
    public string? HolderIdentity { get; set; }

    public int? LeaseDurationSeconds { get; set; }

    [JsonConverter(typeof(MicroTimeConverter))]
    public DateTimeOffset? AcquireTime { get; set; }

    [JsonConverter(typeof(MicroTimeConverter))]
    public DateTimeOffset? RenewTime { get; set; }

    public int? LeaseTransitions { get; set; }

    [JsonExtensionData]
    public Dictionary<string, JsonElement>? Other { get; set; }
}

/// <summary>A <c>LeaseList</c>: the items and the list's resourceVersion, where a watch starts.</summary>
internal sealed class LeaseList
{
    public ObjectMetadata? Metadata { get; set; }

    public List<LeaseObject>? Items { get; set; }
}

/// <summary>A <c>Status</c>, as an error body or a watch <c>ERROR</c> event.</summary>
internal sealed class StatusObject
{
    public int? Code { get; set; }

    public string? Message { get; set; }
}

/// <summary>One line of a watch stream: <c>{"type": ..., "object": {...}}</c>.</summary>
internal sealed record WatchEventDocument(string? Type, JsonElement Object);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(LeaseObject))]
[JsonSerializable(typeof(LeaseList))]
[JsonSerializable(typeof(StatusObject))]
[JsonSerializable(typeof(WatchEventDocument))]
internal sealed partial class LeaseJsonContext : JsonSerializerContext;
