using System.Text.Json.Serialization;

namespace LeaderSidecar.Stores.Etcd;

/// <summary>
/// The value at the lease's key: the Lease spec's fields under their Kubernetes names, times as
/// MicroTime, so <c>etcdctl get</c> shows what <c>kubectl get lease -o yaml</c> would. Fields this
/// version does not know are ignored.
/// </summary>
internal sealed class EtcdLeaseDocument
{
    public string? HolderIdentity { get; set; }

    public int? LeaseDurationSeconds { get; set; }

    [JsonConverter(typeof(MicroTimeConverter))]
    public DateTimeOffset? AcquireTime { get; set; }

    [JsonConverter(typeof(MicroTimeConverter))]
    public DateTimeOffset? RenewTime { get; set; }

    public int? LeaseTransitions { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(EtcdLeaseDocument))]
internal sealed partial class EtcdJsonContext : JsonSerializerContext;
