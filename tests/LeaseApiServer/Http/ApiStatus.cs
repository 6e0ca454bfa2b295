namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// A <c>meta/v1 Status</c>, the body of every error kube-apiserver returns. An empty <see cref="Reason"/>
/// is omitted on the wire (Go's <c>omitempty</c>), as for errors the server does not classify.
/// </summary>
public sealed record ApiStatus(int Code, string Reason, string Message, StatusDetails? Details = null)
{
    /// <summary><c>"Failure"</c> for errors, <c>"Success"</c> for the answer to a DELETE.</summary>
    public string Status { get; init; } = "Failure";
}

/// <summary><c>StatusDetails</c>: which object the status is about and, for 422, the field causes.</summary>
public sealed record StatusDetails(
    string? Name = null,
    string? Group = null,
    string? Kind = null,
    string? Uid = null,
    IReadOnlyList<StatusCause>? Causes = null,
    int? RetryAfterSeconds = null);

/// <summary><c>StatusCause</c>; <see cref="Reason"/> is Go's <c>type</c> field (<c>FieldValueInvalid</c>...).</summary>
public sealed record StatusCause(string Reason, string Message, string? Field = null);
