namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// The Status answers kube-apiserver gives about Leases, worded as in the captures in
/// <c>tests/LeaseApiServer.Tests/Golden</c> and in apimachinery's <c>errors</c> package.
/// </summary>
internal static class LeaseStatuses
{
    public const string Group = "coordination.k8s.io";
    public const string Resource = "leases";
    public const string QualifiedResource = "leases.coordination.k8s.io";

    private const string QualifiedKind = "Lease.coordination.k8s.io";

    public static ApiStatus NotFound(string name) =>
        new(404, "NotFound", $"{QualifiedResource} \"{name}\" not found", Details(name));

    public static ApiStatus AlreadyExists(string name) =>
        new(409, "AlreadyExists", $"{QualifiedResource} \"{name}\" already exists", Details(name));

    public static ApiStatus Conflict(string name) => Conflict(
        name,
        "the object has been modified; please apply your changes to the latest version and try again");

    public static ApiStatus Conflict(string name, string problem) =>
        new(409, "Conflict", $"Operation cannot be fulfilled on {QualifiedResource} \"{name}\": {problem}", Details(name));

    public static ApiStatus Unauthorized() => new(401, "Unauthorized", "Unauthorized");

    /// <summary>RBAC's denial. <paramref name="name"/> is the request's name: from the URL, or for a list or
    /// watch from <c>fieldSelector=metadata.name=NAME</c>; empty for a create.</summary>
    public static ApiStatus Forbidden(string user, ApiVerb verb, string namespaceName, string? name)
    {
        var subject = string.IsNullOrEmpty(name) ? QualifiedResource : $"{QualifiedResource} \"{name}\"";
        var message = $"{subject} is forbidden: User \"{user}\" cannot {verb.ToRbacVerb()} resource \"{Resource}\" "
            + $"in API group \"{Group}\" in the namespace \"{namespaceName}\"";
        return new(403, "Forbidden", message, Details(string.IsNullOrEmpty(name) ? null : name));
    }

    public static ApiStatus BadRequest(string message) => new(400, "BadRequest", message);

    /// <summary>422 from the update path, which names the resource ("leases") where validation names the
    /// kind ("Lease") — both exactly as the real server does.</summary>
    public static ApiStatus MissingResourceVersion(string name)
    {
        const string Problem = "Invalid value: 0x0: must be specified for an update";
        return new(
            422,
            "Invalid",
            $"{QualifiedResource} \"{name}\" is invalid: metadata.resourceVersion: {Problem}",
            Details(name) with { Causes = [new StatusCause("FieldValueInvalid", Problem, "metadata.resourceVersion")] });
    }

    /// <summary>422 from validation; one field error reads inline, several as Go's aggregate "[a, b]".</summary>
    public static ApiStatus Invalid(string name, IReadOnlyList<StatusCause> causes)
    {
        var errors = causes.Select(cause => $"{cause.Field}: {cause.Message}").ToList();
        var summary = errors.Count == 1 ? errors[0] : $"[{string.Join(", ", errors)}]";
        return new(
            422,
            "Invalid",
            $"{QualifiedKind} \"{name}\" is invalid: {summary}",
            new StatusDetails(string.IsNullOrEmpty(name) ? null : name, Group, "Lease", Causes: causes));
    }

    public static ApiStatus UnsupportedMediaType() => new(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + "application/json, application/yaml, application/vnd.kubernetes.protobuf");

    public static ApiStatus MethodNotAllowed() =>
        new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", new StatusDetails());

    public static ApiStatus ResourceNotFound() =>
        new(404, "NotFound", "the server could not find the requested resource", new StatusDetails());

    /// <summary>What a watch from a compacted resourceVersion gets, as its one ERROR event.</summary>
    public static ApiStatus TooOldResourceVersion(long requested, long compacted) =>
        new(410, "Expired", $"too old resource version: {requested} ({compacted})");

    /// <summary>What an open watch gets when etcd compacts past it.</summary>
    public static ApiStatus WatchExpired() =>
        new(410, "Expired", "The resourceVersion for the provided watch is too old.");

    /// <summary>The answer to a successful DELETE (the registry returns a Status, not the object). Its
    /// code is 0, so the field is omitted, though the HTTP status is 200.</summary>
    public static ApiStatus Deleted(string name, string uid) =>
        new(0, "", "", Details(name) with { Uid = uid }) { Status = "Success" };

    private static StatusDetails Details(string? name) => new(name, Group, Resource);
}
