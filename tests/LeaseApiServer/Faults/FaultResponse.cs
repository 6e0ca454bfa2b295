using System.Globalization;
using LeaderSidecar.Testing.LeaseApi.Http;

namespace LeaderSidecar.Testing.LeaseApi.Faults;

/// <summary>
/// A forced answer. Usually a <see cref="ApiStatus"/> as kube-apiserver's own errors are; <see cref="PlainText"/>
/// imitates the few answers that are not JSON (the API priority-and-fairness 429).
/// </summary>
public sealed record FaultResponse(int Code, ApiStatus? Status, string? Text = null, TimeSpan? RetryAfter = null)
{
    /// <summary>500 as <c>apierrors.NewInternalError</c> makes it.</summary>
    public static FaultResponse InternalError(string problem = "injected fault") => new(
        500,
        new ApiStatus(500, "InternalError", $"Internal error occurred: {problem}", new StatusDetails(Causes: [new StatusCause("", problem)])));

    /// <summary>429 as <c>apierrors.NewTooManyRequests</c>: Status with retryAfterSeconds and a Retry-After header.</summary>
    public static FaultResponse TooManyRequests(int retryAfterSeconds = 1) => new(
        429,
        new ApiStatus(429, "TooManyRequests", "Too many requests, please try again later.", new StatusDetails(RetryAfterSeconds: retryAfterSeconds)),
        RetryAfter: TimeSpan.FromSeconds(retryAfterSeconds));

    /// <summary>429 as the priority-and-fairness filter sends it: plain text, Retry-After header.</summary>
    public static FaultResponse TooManyRequestsPlainText(int retryAfterSeconds = 1) =>
        PlainText(429, "Too many requests, please try again later.\n", TimeSpan.FromSeconds(retryAfterSeconds));

    /// <summary>503 as <c>apierrors.NewServiceUnavailable</c> (e.g. etcd unreachable).</summary>
    public static FaultResponse ServiceUnavailable(string message = "etcdserver: leader changed") =>
        new(503, new ApiStatus(503, "ServiceUnavailable", message));

    /// <summary>504 as <c>apierrors.NewTimeoutError</c> answers a request the storage did not finish in time.</summary>
    public static FaultResponse Timeout(int retryAfterSeconds = 0) => new(
        504,
        new ApiStatus(
            504,
            "Timeout",
            "Timeout: request did not complete within requested timeout - context deadline exceeded",
            new StatusDetails(RetryAfterSeconds: retryAfterSeconds)));

    public static FaultResponse FromStatus(ApiStatus status) => new(status.Code, status);

    public static FaultResponse PlainText(int code, string text, TimeSpan? retryAfter = null) => new(code, null, text, retryAfter);

    internal string? RetryAfterHeader => RetryAfter is { } delay
        ? ((int)Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture)
        : null;
}
