using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// A small imitation of server-side field tracking for Update operations: a writer (field manager) takes
/// ownership of the spec fields whose values it changed; an entry's time moves only when its field set
/// changes, which is why a renew by the same manager leaves the captured <c>time</c> alone.
/// </summary>
internal static class ManagedFields
{
    private static readonly string[] SpecFields =
        ["acquireTime", "holderIdentity", "leaseDurationSeconds", "leaseTransitions", "renewTime"];

    /// <summary>The manager name: <c>?fieldManager=</c>, else the User-Agent's product name, as kube-apiserver
    /// derives it.</summary>
    public static string ManagerOf(string? fieldManager, string userAgent)
    {
        var manager = !string.IsNullOrEmpty(fieldManager) ? fieldManager : userAgent.Split('/')[0];
        return manager.Length > 128 ? manager[..128] : manager;
    }

    public static IReadOnlyList<ManagedFieldsEntry> Track(
        IReadOnlyList<ManagedFieldsEntry> entries,
        LeaseSpec? before,
        LeaseSpec after,
        string manager,
        DateTimeOffset now)
    {
        var present = SpecFields.Where(field => Value(after, field) is not null).ToHashSet(StringComparer.Ordinal);
        var changed = present
            .Where(field => before is null || !Equals(Value(before, field), Value(after, field)))
            .ToHashSet(StringComparer.Ordinal);

        var result = new List<ManagedFieldsEntry>();
        var seen = false;
        foreach (var entry in entries)
        {
            var isWriter = entry.Manager == manager;
            seen |= isWriter;
            var owned = entry.SpecFields
                .Where(field => present.Contains(field) && (isWriter || !changed.Contains(field)))
                .Concat(isWriter ? changed : [])
                .Distinct(StringComparer.Ordinal)
                .ToList();
            if (owned.Count == 0)
            {
                continue;
            }

            var unchanged = owned.ToHashSet(StringComparer.Ordinal).SetEquals(entry.SpecFields);
            result.Add(unchanged ? entry : entry with { SpecFields = owned, Time = isWriter ? now : entry.Time });
        }

        if (!seen && changed.Count > 0)
        {
            result.Add(new ManagedFieldsEntry(manager, now, [.. changed]));
        }

        return result;
    }

    private static object? Value(LeaseSpec spec, string field) => field switch
    {
        "acquireTime" => spec.AcquireTime,
        "holderIdentity" => spec.HolderIdentity,
        "leaseDurationSeconds" => spec.LeaseDurationSeconds,
        "leaseTransitions" => spec.LeaseTransitions,
        _ => spec.RenewTime,
    };
}
