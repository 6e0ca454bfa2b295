using LeaderSidecar.Testing.LeaseApi.Storage;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// A <c>fieldSelector</c> on the fields a Lease supports (<c>metadata.name</c>, <c>metadata.namespace</c>)
/// with <c>=</c>, <c>==</c> and <c>!=</c>, comma-separated.
/// </summary>
internal sealed record FieldSelector(IReadOnlyList<(string Field, bool Equal, string Value)> Requirements)
{
    public static FieldSelector Everything { get; } = new([]);

    /// <summary>The name an exact <c>metadata.name=NAME</c> requirement selects; RBAC authorizes a list or
    /// watch by this name as if it were a GET of that Lease.</summary>
    public string? ExactName => Requirements
        .Where(requirement => requirement.Field == "metadata.name" && requirement.Equal)
        .Select(requirement => requirement.Value)
        .FirstOrDefault();

    public static FieldSelector Parse(string? text, out ApiStatus? error)
    {
        error = null;
        if (string.IsNullOrEmpty(text))
        {
            return Everything;
        }

        var requirements = new List<(string, bool, string)>();
        foreach (var term in text.Split(','))
        {
            var (field, equal, value) = SplitTerm(term);
            if (field is null)
            {
                error = LeaseStatuses.BadRequest($"invalid selector: '{text}'; can't understand '{term}'");
                return Everything;
            }

            if (field is not ("metadata.name" or "metadata.namespace"))
            {
                error = LeaseStatuses.BadRequest($"field label not supported: {field}");
                return Everything;
            }

            requirements.Add((field, equal, value!));
        }

        return new FieldSelector(requirements);
    }

    public bool Matches(Lease lease) => Requirements.All(requirement =>
        (requirement.Field == "metadata.name" ? lease.Metadata.Name : lease.Metadata.Namespace) == requirement.Value
        == requirement.Equal);

    private static (string? Field, bool Equal, string? Value) SplitTerm(string term)
    {
        foreach (var (op, equal) in new[] { ("!=", false), ("==", true), ("=", true) })
        {
            var at = term.IndexOf(op, StringComparison.Ordinal);
            if (at > 0)
            {
                return (term[..at], equal, term[(at + op.Length)..]);
            }
        }

        return (null, false, null);
    }
}

/// <summary>
/// The equality subset of a <c>labelSelector</c>: <c>k=v</c>, <c>k==v</c>, <c>k!=v</c>, <c>k</c>, <c>!k</c>.
/// Set-based terms (<c>in</c>, <c>notin</c>) are refused with 400 rather than silently ignored.
/// </summary>
internal sealed record LabelSelector(IReadOnlyList<Func<IReadOnlyDictionary<string, string>, bool>> Requirements)
{
    public static LabelSelector Everything { get; } = new([]);

    public static LabelSelector Parse(string? text, out ApiStatus? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return Everything;
        }

        var requirements = new List<Func<IReadOnlyDictionary<string, string>, bool>>();
        foreach (var raw in text.Split(','))
        {
            var term = raw.Trim();
            if (term.Contains(' ', StringComparison.Ordinal) || term.Contains('(', StringComparison.Ordinal) || term.Length == 0)
            {
                error = LeaseStatuses.BadRequest($"unable to parse requirement: {term} (only equality-based selectors are imitated)");
                return Everything;
            }

            if (term.StartsWith('!'))
            {
                var key = term[1..];
                requirements.Add(labels => !labels.ContainsKey(key));
            }
            else if (term.Split("!=") is [var key, var value])
            {
                requirements.Add(labels => labels.GetValueOrDefault(key) != value);
            }
            else if (SplitEquality(term) is var (equalKey, equalValue))
            {
                requirements.Add(labels => labels.GetValueOrDefault(equalKey) == equalValue);
            }
            else
            {
                requirements.Add(labels => labels.ContainsKey(term));
            }
        }

        return new LabelSelector(requirements);
    }

    public bool Matches(Lease lease)
    {
        var labels = lease.Metadata.Labels ?? new Dictionary<string, string>();
        return Requirements.All(requirement => requirement(labels));
    }

    private static (string Key, string Value)? SplitEquality(string term) =>
        term.Split("==") is [var key, var value] ? (key, value)
        : term.Split('=') is [var key1, var value1] ? (key1, value1)
        : null;
}
