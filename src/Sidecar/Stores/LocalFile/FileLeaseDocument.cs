using System.Text.Json.Serialization;

namespace LeaderSidecar.Stores.LocalFile;

/// <summary>The lease file: a Kubernetes Lease spec with the object's uid and version counter.</summary>
internal sealed record FileLeaseDocument(string Uid, long ResourceVersion, FileLeaseSpec? Spec);

/// <summary>Field for field <c>coordination.k8s.io/v1</c> LeaseSpec.</summary>
internal sealed record FileLeaseSpec(
    string? HolderIdentity,
    int? LeaseDurationSeconds,
    [property: JsonConverter(typeof(MicroTimeConverter))] DateTimeOffset? AcquireTime,
    [property: JsonConverter(typeof(MicroTimeConverter))] DateTimeOffset? RenewTime,
    int? LeaseTransitions);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(FileLeaseDocument))]
internal sealed partial class FileLeaseJsonContext : JsonSerializerContext;
