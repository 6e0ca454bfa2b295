namespace LeaderSidecar.Testing.LeaseApi.Storage;

/// <summary>
/// A <c>coordination.k8s.io/v1</c> Lease as the server stores it. Only the fields kube-apiserver keeps for a
/// Lease are modelled; like the real server, fields it does not know are dropped on write.
/// </summary>
public sealed record Lease(LeaseMetadata Metadata, LeaseSpec Spec)
{
    /// <summary>A new Lease with just a name and a spec, ready for <see cref="LeaseStore.Put"/>.</summary>
    public static Lease Create(string namespaceName, string name, LeaseSpec spec) =>
        new(new LeaseMetadata { Namespace = namespaceName, Name = name }, spec);

    /// <summary>The resourceVersion as the number it is (it is a string on the wire).</summary>
    public long Revision => long.Parse(Metadata.ResourceVersion, System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>The part of <c>ObjectMeta</c> a Lease uses. <c>Uid</c>, <c>ResourceVersion</c> and
/// <c>CreationTimestamp</c> are owned by the store; whatever a writer puts there is replaced.</summary>
public sealed record LeaseMetadata
{
    public required string Namespace { get; init; }

    public required string Name { get; init; }

    public string Uid { get; init; } = "";

    public string ResourceVersion { get; init; } = "";

    /// <summary>Whole seconds, UTC, as kube-apiserver stores it.</summary>
    public DateTimeOffset CreationTimestamp { get; init; }

    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    public IReadOnlyDictionary<string, string>? Annotations { get; init; }

    public IReadOnlyList<ManagedFieldsEntry> ManagedFields { get; init; } = [];
}

/// <summary>
/// <c>LeaseSpec</c>. Every field is optional (a Go pointer): <c>null</c> is omitted on the wire, an empty
/// holder is written as <c>""</c>. Times are MicroTime: UTC with whole microseconds.
/// </summary>
public sealed record LeaseSpec
{
    public string? HolderIdentity { get; init; }

    public int? LeaseDurationSeconds { get; init; }

    public DateTimeOffset? AcquireTime { get; init; }

    public DateTimeOffset? RenewTime { get; init; }

    public int? LeaseTransitions { get; init; }
}

/// <summary>
/// A simplified <c>managedFields</c> entry: which spec fields a field manager (the User-Agent's product name)
/// last changed. Present so clients meet the same payload shape as against a real server.
/// </summary>
public sealed record ManagedFieldsEntry(string Manager, DateTimeOffset Time, IReadOnlyList<string> SpecFields);
