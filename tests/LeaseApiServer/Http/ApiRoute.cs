using Microsoft.AspNetCore.Http;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// What kube-apiserver's request-info resolver makes of a request: verb, namespace, the Lease name from the
/// URL, and the name RBAC authorizes (for a list or watch, the one from <c>fieldSelector=metadata.name=</c>).
/// </summary>
internal sealed record ApiRoute(
    ApiVerb Verb,
    string Namespace,
    string? UrlName,
    FieldSelector Fields,
    LabelSelector Labels,
    string? Token)
{
    private const string GroupVersionPath = "/apis/coordination.k8s.io/v1";

    /// <summary>The name RBAC's resourceNames are checked against.</summary>
    public string? AuthorizedName => UrlName ?? Fields.ExactName;

    /// <summary>Resolves a request. On failure <paramref name="error"/> holds the answer: a Status, or null
    /// with <paramref name="notApi"/> set for paths outside the API (plain "404 page not found").</summary>
    public static ApiRoute? Resolve(HttpRequest request, out ApiStatus? error, out bool notApi)
    {
        error = null;
        notApi = false;
        var path = request.Path.Value ?? "";
        if (!path.StartsWith(GroupVersionPath, StringComparison.Ordinal))
        {
            notApi = true;
            return null;
        }

        var segments = path[GroupVersionPath.Length..].Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments is not (["namespaces", _, "leases"] or ["namespaces", _, "leases", _]))
        {
            error = LeaseStatuses.ResourceNotFound();
            return null;
        }

        var name = segments.Length == 4 ? segments[3] : null;
        var verb = (request.Method, name) switch
        {
            ("GET", not null) => ApiVerb.Get,
            ("GET", null) => IsWatch(request) ? ApiVerb.Watch : ApiVerb.List,
            ("POST", null) => ApiVerb.Create,
            ("PUT", not null) => ApiVerb.Update,
            ("DELETE", not null) => ApiVerb.Delete,
            _ => (ApiVerb?)null,
        };
        if (verb is null)
        {
            // PATCH, DELETE of the collection and the like are real verbs this imitation does not serve.
            error = LeaseStatuses.MethodNotAllowed();
            return null;
        }

        var fields = FieldSelector.Everything;
        var labels = LabelSelector.Everything;
        if (verb is ApiVerb.List or ApiVerb.Watch)
        {
            fields = FieldSelector.Parse(request.Query["fieldSelector"], out error);
            labels = error is null ? LabelSelector.Parse(request.Query["labelSelector"], out error) : labels;
            if (error is not null)
            {
                return null;
            }
        }

        return new ApiRoute(verb.Value, segments[1], name, fields, labels, BearerToken(request));
    }

    // Like the request-info resolver: any watch value but "false" and "0" makes a list a watch.
    private static bool IsWatch(HttpRequest request) =>
        request.Query.TryGetValue("watch", out var values)
        && values.ToString().ToUpperInvariant() is not ("FALSE" or "0");

    private static string? BearerToken(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        if (!header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        var token = header[Scheme.Length..].Trim();
        return token.Length > 0 ? token : null;
    }
}
