namespace LeaderSidecar.Testing.LeaseApi.Auth;

/// <summary>
/// One RBAC <c>PolicyRule</c> on <c>coordination.k8s.io/leases</c> (or, with <see cref="Resource"/>, on
/// another resource the server serves, such as <c>endpointslices</c>): the verbs it allows (<c>"*"</c> for
/// all), optionally only for some names and only in one namespace (a Role) or in all (a ClusterRole).
/// </summary>
/// <remarks>
/// As in RBAC, a rule with <see cref="ResourceNames"/> matches only requests that carry a name: GET, PUT and
/// DELETE by URL, LIST and WATCH only with <c>fieldSelector=metadata.name=NAME</c>. A create carries no name
/// (it is in the body), so a create limited by name is never allowed.
/// <see cref="Resource"/> is <c>leases</c> unless the rule is about core/v1 <c>events</c>, which the
/// server only lets be created and listed (<see cref="EventsCreate"/>); <c>"*"</c> is both.
/// </remarks>
public sealed record LeaseRule(
    IReadOnlyList<string> Verbs,
    IReadOnlyList<string>? ResourceNames = null,
    string? Namespace = null,
    string Resource = LeaseRule.Leases)
{
    public const string Leases = "leases";

    public const string Get = "get";
    public const string List = "list";
    public const string Watch = "watch";
    public const string Create = "create";
    public const string Update = "update";
    public const string Delete = "delete";

    /// <summary>Every verb on every Lease.</summary>
    public static LeaseRule All { get; } = new(["*"], Resource: "*");

    /// <summary>What the sidecar's <c>--events</c> needs: create core/v1 events in the namespace.</summary>
    public static LeaseRule EventsCreate(string namespaceName) => new([Create], Namespace: namespaceName, Resource: "events");

    /// <summary>The least privilege the product's <c>deploy/</c> RBAC grants: get, update, list and watch
    /// of the one Lease by name, plus create (which RBAC cannot limit by name).</summary>
    public static IReadOnlyList<LeaseRule> ForElection(string namespaceName, string leaseName) =>
    [
        new([Get, Update, List, Watch], [leaseName], namespaceName),
        new([Create], Namespace: namespaceName),
    ];

    internal bool Allows(ApiVerb verb, string namespaceName, string? name, string resource = Leases) =>
        (Namespace is null || Namespace == namespaceName)
        && (Resource == "*" || Resource == resource)
        && Verbs.Any(allowed => allowed == "*" || allowed == verb.ToRbacVerb())
        && (ResourceNames is not { Count: > 0 } || (!string.IsNullOrEmpty(name) && ResourceNames.Contains(name)));
}

/// <summary>The identity a bearer token stands for and what it may do.</summary>
public sealed record ApiUser(string Name, IReadOnlyList<LeaseRule> Rules)
{
    /// <summary>A user allowed everything, like a cluster admin.</summary>
    public static ApiUser Admin(string name = "admin") => new(name, [new(["*"], Resource: "*")]);

    internal bool Allows(ApiVerb verb, string namespaceName, string? name, string resource = LeaseRule.Leases) =>
        Rules.Any(rule => rule.Allows(verb, namespaceName, name, resource));

    internal bool AllowsEvents(ApiVerb verb, string namespaceName) =>
        Rules.Any(rule => rule.Allows(verb, namespaceName, null, "events"));
}
