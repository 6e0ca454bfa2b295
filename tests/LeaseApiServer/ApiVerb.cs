namespace LeaderSidecar.Testing.LeaseApi;

/// <summary>The request verbs of the Lease API, as kube-apiserver's request info names them.</summary>
public enum ApiVerb
{
    Get,
    List,
    Watch,
    Create,
    Update,
    Delete,
}

internal static class ApiVerbExtensions
{
    /// <summary>The lower-case verb RBAC rules and Forbidden messages use.</summary>
    public static string ToRbacVerb(this ApiVerb verb) => verb switch
    {
        ApiVerb.Get => "get",
        ApiVerb.List => "list",
        ApiVerb.Watch => "watch",
        ApiVerb.Create => "create",
        ApiVerb.Update => "update",
        ApiVerb.Delete => "delete",
        _ => throw new ArgumentOutOfRangeException(nameof(verb), verb, null),
    };
}
