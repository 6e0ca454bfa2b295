namespace LeaderSidecar.Testing.LeaseApi.Faults;

/// <summary>Which requests a fault applies to; a null field matches anything. <see cref="Token"/> is the
/// bearer token as sent, which is how a test singles out one replica.</summary>
public sealed record RequestFilter(ApiVerb? Verb = null, string? Token = null, string? LeaseName = null)
{
    public static RequestFilter Any { get; } = new();

    internal bool Matches(ApiVerb verb, string? token, string? leaseName) =>
        (Verb is null || Verb == verb)
        && (Token is null || Token == token)
        && (LeaseName is null || LeaseName == leaseName);
}
