using System.Globalization;
using System.Text;
using System.Text.Json;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Metrics;
using LeaderSidecar.Testing.LeaseApi.Storage;
using Microsoft.AspNetCore.Http;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// The request pipeline, in kube-apiserver's order: resolve the request, count it, inject faults, authenticate
/// (401), authorize (403), then the registry logic of each verb. Watches are served by <see cref="WatchEndpoint"/>.
/// </summary>
internal sealed class LeaseApiHandler(
    LeaseStore store,
    TokenRegistry tokens,
    FaultInjector faults,
    RequestCounters counters,
    WatchEndpoint watches,
    TimeProvider time)
{
    // kube-apiserver refuses request bodies above 3 MiB.
    private const int MaxBodyBytes = 3 * 1024 * 1024;

    public async Task HandleAsync(HttpContext context)
    {
        var response = context.Response;
        response.Headers.CacheControl = "no-cache, private";
        response.Headers["Audit-Id"] = Guid.NewGuid().ToString();

        if (context.Request.Path.Value is "/healthz" or "/livez" or "/readyz")
        {
            await WriteTextAsync(context, 200, "ok");
            return;
        }

        var route = ApiRoute.Resolve(context.Request, out var routeError, out var notApi);
        if (route is null)
        {
            await (notApi
                ? WriteTextAsync(context, 404, "404 page not found\n")
                : WriteStatusAsync(context, routeError!));
            return;
        }

        counters.Record(route.Verb, route.Token);
        try
        {
            await ServeAsync(context, route);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client gave up (or the server cut the connection); nobody is left to answer.
        }
    }

    private async Task ServeAsync(HttpContext context, ApiRoute route)
    {
        var fault = await faults.ApplyAsync(route.Verb, route.Token, route.AuthorizedName, context.RequestAborted);
        if (fault is not null)
        {
            await WriteFaultAsync(context, fault);
            return;
        }

        var user = tokens.Authenticate(route.Token);
        if (user is null)
        {
            await WriteStatusAsync(context, LeaseStatuses.Unauthorized());
            return;
        }

        if (!tokens.Authorize(user, route.Verb, route.Namespace, route.AuthorizedName))
        {
            await WriteStatusAsync(context, LeaseStatuses.Forbidden(user.Name, route.Verb, route.Namespace, route.AuthorizedName));
            return;
        }

        switch (route.Verb)
        {
            case ApiVerb.Get:
                await GetAsync(context, route);
                break;
            case ApiVerb.List:
                await ListAsync(context, route);
                break;
            case ApiVerb.Watch:
                await watches.ServeAsync(context, route);
                break;
            case ApiVerb.Create:
                await CreateAsync(context, route);
                break;
            case ApiVerb.Update:
                await UpdateAsync(context, route, user);
                break;
            case ApiVerb.Delete:
                await DeleteAsync(context, route);
                break;
        }
    }

    private async Task GetAsync(HttpContext context, ApiRoute route)
    {
        var lease = store.Get(route.Namespace, route.UrlName!);
        await (lease is null
            ? WriteStatusAsync(context, LeaseStatuses.NotFound(route.UrlName!))
            : WriteJsonAsync(context, 200, ApiJson.Lease(lease, IsPretty(context.Request))));
    }

    private async Task ListAsync(HttpContext context, ApiRoute route)
    {
        var (items, revision) = store.ListWithRevision(route.Namespace);
        var selected = items.Where(lease => route.Fields.Matches(lease) && route.Labels.Matches(lease)).ToList();
        await WriteJsonAsync(context, 200, ApiJson.LeaseList(selected, revision, IsPretty(context.Request)));
    }

    private async Task CreateAsync(HttpContext context, ApiRoute route)
    {
        var (decoded, error) = await ReadLeaseAsync(context);
        if (decoded is null)
        {
            await WriteStatusAsync(context, error!);
            return;
        }

        if (decoded.Namespace.Length > 0 && decoded.Namespace != route.Namespace)
        {
            await WriteStatusAsync(context, LeaseStatuses.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"));
            return;
        }

        var causes = LeaseValidation.Validate(decoded.Name, decoded.Spec, creating: true);
        if (causes.Count > 0)
        {
            await WriteStatusAsync(context, LeaseStatuses.Invalid(decoded.Name, causes));
            return;
        }

        if (decoded.ResourceVersion.Length > 0)
        {
            // etcd3 storage refuses it with a plain error, which the server answers as 500 with no reason.
            await WriteStatusAsync(context, new ApiStatus(500, "", "resourceVersion should not be set on objects to be created"));
            return;
        }

        var manager = ManagerOf(context);
        var exists = false;
        var created = store.Apply(route.Namespace, decoded.Name, current =>
        {
            exists = current is not null;
            return exists ? LeaseChange.None : LeaseChange.Write(NewLease(route, decoded, null, manager));
        });
        await (exists
            ? WriteStatusAsync(context, LeaseStatuses.AlreadyExists(decoded.Name))
            : WriteJsonAsync(context, 201, ApiJson.Lease(created!, IsPretty(context.Request))));
    }

    /// <summary>
    /// PUT as the generic registry's <c>Store.Update</c> does it: UID precondition, create-on-update (Leases
    /// allow it, with a second authorization check for "create"), then the compare-and-swap on
    /// resourceVersion, then validation.
    /// </summary>
    private async Task UpdateAsync(HttpContext context, ApiRoute route, ApiUser user)
    {
        var (decoded, error) = await ReadLeaseAsync(context);
        if (decoded is null)
        {
            await WriteStatusAsync(context, error!);
            return;
        }

        var name = route.UrlName!;
        if (decoded.Name != name)
        {
            await WriteStatusAsync(context, LeaseStatuses.BadRequest(
                $"the name of the object ({decoded.Name}) does not match the name on the URL ({name})"));
            return;
        }

        if (decoded.Namespace.Length > 0 && decoded.Namespace != route.Namespace)
        {
            await WriteStatusAsync(context, LeaseStatuses.BadRequest(
                $"the namespace of the object ({decoded.Namespace}) does not match the namespace on the request ({route.Namespace})"));
            return;
        }

        long expectedRevision = 0;
        if (decoded.ResourceVersion.Length > 0 && !long.TryParse(decoded.ResourceVersion, NumberStyles.None, CultureInfo.InvariantCulture, out expectedRevision))
        {
            await WriteStatusAsync(context, LeaseStatuses.Invalid(name, [new StatusCause(
                "FieldValueInvalid",
                $"Invalid value: {MicroTime.GoQuote(decoded.ResourceVersion)}: invalid resource version",
                "metadata.resourceVersion")]));
            return;
        }

        var manager = ManagerOf(context);
        ApiStatus? refusal = null;
        var creating = false;
        var written = store.Apply(route.Namespace, name, current =>
        {
            if (decoded.Uid.Length > 0 && decoded.Uid != current?.Metadata.Uid)
            {
                refusal = LeaseStatuses.Conflict(
                    name,
                    $"Precondition failed: UID in precondition: {decoded.Uid}, UID in object meta: {current?.Metadata.Uid}");
                return LeaseChange.None;
            }

            if (current is null)
            {
                creating = true;
                refusal = !tokens.Authorize(user, ApiVerb.Create, route.Namespace, name)
                    ? LeaseStatuses.Forbidden(user.Name, ApiVerb.Create, route.Namespace, name)
                    : Invalid(name, decoded.Spec, creating: true);
                return refusal is null ? LeaseChange.Write(NewLease(route, decoded, null, manager)) : LeaseChange.None;
            }

            refusal = expectedRevision == 0 ? LeaseStatuses.MissingResourceVersion(name)
                : expectedRevision != current.Revision ? LeaseStatuses.Conflict(name)
                : Invalid(name, decoded.Spec, creating: false);
            return refusal is null ? LeaseChange.Write(NewLease(route, decoded, current, manager)) : LeaseChange.None;
        });

        await (refusal is not null
            ? WriteStatusAsync(context, refusal)
            : WriteJsonAsync(context, creating ? 201 : 200, ApiJson.Lease(written!, IsPretty(context.Request))));
    }

    /// <summary>DELETE with optional <c>DeleteOptions.preconditions</c>; answers a Success Status.</summary>
    private async Task DeleteAsync(HttpContext context, ApiRoute route)
    {
        var name = route.UrlName!;
        var body = await ReadBodyAsync(context);
        string? uid = null;
        string? resourceVersion = null;
        if (body.Length > 0)
        {
            try
            {
                using var options = JsonDocument.Parse(body);
                if (options.RootElement.ValueKind == JsonValueKind.Object
                    && options.RootElement.TryGetProperty("preconditions", out var preconditions)
                    && preconditions.ValueKind == JsonValueKind.Object)
                {
                    uid = preconditions.TryGetProperty("uid", out var u) && u.ValueKind == JsonValueKind.String ? u.GetString() : null;
                    resourceVersion = preconditions.TryGetProperty("resourceVersion", out var rv) && rv.ValueKind == JsonValueKind.String
                        ? rv.GetString()
                        : null;
                }
            }
            catch (JsonException exception)
            {
                await WriteStatusAsync(context, LeaseStatuses.BadRequest(exception.Message));
                return;
            }
        }

        ApiStatus? refusal = null;
        var deleted = store.Apply(route.Namespace, name, current =>
        {
            refusal = current is null ? LeaseStatuses.NotFound(name)
                : uid is not null && uid != current.Metadata.Uid ? LeaseStatuses.Conflict(
                    name, $"Precondition failed: UID in precondition: {uid}, UID in object meta: {current.Metadata.Uid}")
                : resourceVersion is not null && resourceVersion != current.Metadata.ResourceVersion ? LeaseStatuses.Conflict(
                    name,
                    $"Precondition failed: ResourceVersion in precondition: {resourceVersion}, ResourceVersion in object meta: {current.Metadata.ResourceVersion}")
                : null;
            return refusal is null ? LeaseChange.Remove : LeaseChange.None;
        });

        await (refusal is not null
            ? WriteStatusAsync(context, refusal)
            : WriteJsonAsync(context, 200, ApiJson.Status(LeaseStatuses.Deleted(name, deleted!.Metadata.Uid), IsPretty(context.Request))));
    }

    private static ApiStatus? Invalid(string name, LeaseSpec spec, bool creating) =>
        LeaseValidation.Validate(name, spec, creating) is { Count: > 0 } causes ? LeaseStatuses.Invalid(name, causes) : null;

    private Lease NewLease(ApiRoute route, DecodedLease decoded, Lease? current, string manager) => new(
        new LeaseMetadata
        {
            Namespace = route.Namespace,
            Name = decoded.Name,
            Labels = decoded.Labels,
            Annotations = decoded.Annotations,
            ManagedFields = ManagedFields.Track(
                current?.Metadata.ManagedFields ?? [], current?.Spec, decoded.Spec, manager, time.GetUtcNow()),
        },
        decoded.Spec);

    private static string ManagerOf(HttpContext context) =>
        ManagedFields.ManagerOf(context.Request.Query["fieldManager"], context.Request.Headers.UserAgent.ToString());

    private static async Task<(DecodedLease? Lease, ApiStatus? Error)> ReadLeaseAsync(HttpContext context)
    {
        if (!IsJson(context.Request.ContentType))
        {
            return (null, LeaseStatuses.UnsupportedMediaType());
        }

        var body = await ReadBodyAsync(context);
        if (body.Length > MaxBodyBytes)
        {
            return (null, new ApiStatus(413, "RequestEntityTooLarge", $"Request entity too large: limit is {MaxBodyBytes}"));
        }

        var lease = LeaseDecoder.Decode(body, out var error);
        return (lease, error);
    }

    private static bool IsJson(string? contentType) =>
        contentType is not null
        && contentType.Split(';')[0].Trim().Equals("application/json", StringComparison.OrdinalIgnoreCase);

    private static async Task<byte[]> ReadBodyAsync(HttpContext context)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        return buffer.ToArray();
    }

    /// <summary>kube-apiserver indents JSON for <c>?pretty=true</c> and for curl, Wget and browsers.</summary>
    internal static bool IsPretty(HttpRequest request)
    {
        if (request.Query.TryGetValue("pretty", out var pretty) && pretty.ToString().Length > 0)
        {
            return pretty.ToString().ToUpperInvariant() is "TRUE" or "1" or "T";
        }

        var userAgent = request.Headers.UserAgent.ToString();
        return userAgent.StartsWith("curl", StringComparison.Ordinal)
            || userAgent.StartsWith("Wget", StringComparison.Ordinal)
            || userAgent.StartsWith("Mozilla/5.0", StringComparison.Ordinal);
    }

    internal static Task WriteStatusAsync(HttpContext context, ApiStatus status) =>
        WriteJsonAsync(context, status.Code, ApiJson.Status(status, IsPretty(context.Request)));

    internal static async Task WriteJsonAsync(HttpContext context, int statusCode, byte[] json)
    {
        context.Response.StatusCode = statusCode;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, context.RequestAborted);
    }

    private static async Task WriteFaultAsync(HttpContext context, FaultResponse fault)
    {
        if (fault.RetryAfterHeader is { } retryAfter)
        {
            context.Response.Headers.RetryAfter = retryAfter;
        }

        await (fault.Status is { } status
            ? WriteJsonAsync(context, fault.Code, ApiJson.Status(status with { Code = fault.Code }, IsPretty(context.Request)))
            : WriteTextAsync(context, fault.Code, fault.Text ?? ""));
    }

    private static async Task WriteTextAsync(HttpContext context, int statusCode, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        context.Response.StatusCode = statusCode;
        context.Response.ContentType = "text/plain; charset=utf-8";
        context.Response.ContentLength = bytes.Length;
        await context.Response.Body.WriteAsync(bytes, context.RequestAborted);
    }
}
