using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Http;
using Microsoft.AspNetCore.Http;

namespace LeaderSidecar.Testing.LeaseApi.Slices;

/// <summary>
/// <c>GET</c>/<c>PUT</c> of <c>/apis/discovery.k8s.io/v1/namespaces/NS/endpointslices/NAME</c> and
/// <c>POST</c> of the collection, in kube-apiserver's order: faults, authentication (401), RBAC on
/// <c>endpointslices</c> by resourceNames (403), then the registry: 404 for a missing slice (an
/// EndpointSlice is not created by an update), 400 for a name or namespace that differs from the URL,
/// 409 for a stale resourceVersion or uid (without one the update is unconditional, as EndpointSlices
/// allow), 422 for an invalid or changed addressType and for addresses not of that type.
/// </summary>
internal sealed class EndpointSliceHandler(EndpointSliceStore store, TokenRegistry tokens, FaultInjector faults)
{
    public const string Group = "discovery.k8s.io";
    public const string Resource = "endpointslices";
    private const string GroupVersionPath = "/apis/discovery.k8s.io/v1";
    private const string QualifiedResource = "endpointslices.discovery.k8s.io";
    private const int MaxBodyBytes = 3 * 1024 * 1024;

    /// <summary>Requests this handler serves (the rest of the server serves Leases).</summary>
    public static bool Serves(HttpRequest request) =>
        request.Path.Value?.StartsWith(GroupVersionPath + "/", StringComparison.Ordinal) == true;

    public async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var segments = request.Path.Value![GroupVersionPath.Length..].Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments is not (["namespaces", _, Resource] or ["namespaces", _, Resource, _]))
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(404, "NotFound", "the server could not find the requested resource", new StatusDetails()));
            return;
        }

        var namespaceName = segments[1];
        var name = segments.Length == 4 ? segments[3] : null;
        var verb = (request.Method, name) switch
        {
            ("GET", not null) => ApiVerb.Get,
            ("POST", null) => ApiVerb.Create,
            ("PUT", not null) => ApiVerb.Update,
            _ => (ApiVerb?)null,
        };
        if (verb is null)
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", new StatusDetails()));
            return;
        }

        var token = BearerToken(request);
        try
        {
            var fault = await faults.ApplyAsync(verb.Value, token, name, context.RequestAborted);
            if (fault is not null)
            {
                await LeaseApiHandler.WriteJsonAsync(context, fault.Code, ApiJson.Status((fault.Status ?? new ApiStatus(fault.Code, "", fault.Text ?? "")) with { Code = fault.Code }));
                return;
            }

            var user = tokens.Authenticate(token);
            if (user is null)
            {
                await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(401, "Unauthorized", "Unauthorized"));
                return;
            }

            if (!tokens.Authorize(user, verb.Value, namespaceName, name, Resource))
            {
                await LeaseApiHandler.WriteStatusAsync(context, Forbidden(user.Name, verb.Value, namespaceName, name));
                return;
            }

            await (verb switch
            {
                ApiVerb.Get => GetAsync(context, namespaceName, name!),
                ApiVerb.Create => CreateAsync(context, namespaceName),
                _ => UpdateAsync(context, namespaceName, name!),
            });
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client gave up; nobody is left to answer.
        }
    }

    public static ApiStatus NotFound(string name) =>
        new(404, "NotFound", $"{QualifiedResource} \"{name}\" not found", Details(name));

    public static ApiStatus AlreadyExists(string name) =>
        new(409, "AlreadyExists", $"{QualifiedResource} \"{name}\" already exists", Details(name));

    public static ApiStatus Conflict(string name, string problem = "the object has been modified; please apply your changes to the latest version and try again") =>
        new(409, "Conflict", $"Operation cannot be fulfilled on {QualifiedResource} \"{name}\": {problem}", Details(name));

    public static ApiStatus Forbidden(string user, ApiVerb verb, string namespaceName, string? name)
    {
        var subject = string.IsNullOrEmpty(name) ? QualifiedResource : $"{QualifiedResource} \"{name}\"";
        return new(
            403,
            "Forbidden",
            $"{subject} is forbidden: User \"{user}\" cannot {verb.ToRbacVerb()} resource \"{Resource}\" in API group \"{Group}\" in the namespace \"{namespaceName}\"",
            Details(string.IsNullOrEmpty(name) ? null : name));
    }

    private async Task GetAsync(HttpContext context, string namespaceName, string name)
    {
        var slice = store.Get(namespaceName, name);
        await (slice is null
            ? LeaseApiHandler.WriteStatusAsync(context, NotFound(name))
            : LeaseApiHandler.WriteJsonAsync(context, 200, Serialize(slice)));
    }

    private async Task CreateAsync(HttpContext context, string namespaceName)
    {
        var (body, error) = await ReadAsync(context);
        if (body is null)
        {
            await LeaseApiHandler.WriteStatusAsync(context, error!);
            return;
        }

        var name = (string?)body["metadata"]?["name"] ?? "";
        if (NamespaceMismatch(body, namespaceName) is { } mismatch)
        {
            await LeaseApiHandler.WriteStatusAsync(context, mismatch);
            return;
        }

        if (Invalid(body, name, current: null) is { } invalid)
        {
            await LeaseApiHandler.WriteStatusAsync(context, invalid);
            return;
        }

        if (!string.IsNullOrEmpty((string?)body["metadata"]?["resourceVersion"]))
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(500, "", "resourceVersion should not be set on objects to be created"));
            return;
        }

        ApiStatus? refusal = null;
        var created = store.Write(namespaceName, name, current =>
        {
            refusal = current is null ? null : AlreadyExists(name);
            return refusal is null ? body : null;
        }, out _);
        await (refusal is not null
            ? LeaseApiHandler.WriteStatusAsync(context, refusal)
            : LeaseApiHandler.WriteJsonAsync(context, 201, Serialize(created!)));
    }

    private async Task UpdateAsync(HttpContext context, string namespaceName, string name)
    {
        var (body, error) = await ReadAsync(context);
        if (body is null)
        {
            await LeaseApiHandler.WriteStatusAsync(context, error!);
            return;
        }

        var bodyName = (string?)body["metadata"]?["name"] ?? "";
        if (bodyName != name)
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(400, "BadRequest", $"the name of the object ({bodyName}) does not match the name on the URL ({name})"));
            return;
        }

        if (NamespaceMismatch(body, namespaceName) is { } mismatch)
        {
            await LeaseApiHandler.WriteStatusAsync(context, mismatch);
            return;
        }

        var uid = (string?)body["metadata"]?["uid"] ?? "";
        var resourceVersion = (string?)body["metadata"]?["resourceVersion"] ?? "";
        ApiStatus? refusal = null;
        var written = store.Write(namespaceName, name, current =>
        {
            refusal = current is null ? NotFound(name)
                : uid.Length > 0 && uid != (string?)current["metadata"]?["uid"]
                    ? Conflict(name, $"Precondition failed: UID in precondition: {uid}, UID in object meta: {(string?)current["metadata"]?["uid"]}")
                : resourceVersion.Length > 0 && resourceVersion != (string?)current["metadata"]?["resourceVersion"] ? Conflict(name)
                : Invalid(body, name, current);
            return refusal is null ? body : null;
        }, out _);
        await (refusal is not null
            ? LeaseApiHandler.WriteStatusAsync(context, refusal)
            : LeaseApiHandler.WriteJsonAsync(context, 200, Serialize(written!)));
    }

    private static ApiStatus? NamespaceMismatch(JsonObject body, string namespaceName) =>
        (string?)body["metadata"]?["namespace"] is { Length: > 0 } given && given != namespaceName
            ? new ApiStatus(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            : null;

    /// <summary>The validation this imitation does: addressType set, one of IPv4/IPv6/FQDN, unchanged; IP addresses of that family.</summary>
    private static ApiStatus? Invalid(JsonObject slice, string name, JsonObject? current)
    {
        List<StatusCause> causes = [];
        var addressType = (string?)slice["addressType"] ?? "";
        if (addressType.Length == 0)
        {
            causes.Add(new("FieldValueRequired", "Required value", "addressType"));
        }
        else if (addressType is not ("IPv4" or "IPv6" or "FQDN"))
        {
            causes.Add(new("FieldValueNotSupported", $"Unsupported value: \"{addressType}\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"", "addressType"));
        }
        else if (current is not null && (string?)current["addressType"] != addressType)
        {
            causes.Add(new("FieldValueInvalid", $"Invalid value: \"{addressType}\": field is immutable", "addressType"));
        }

        if (slice["endpoints"] is JsonArray endpoints)
        {
            for (var i = 0; i < endpoints.Count; i++)
            {
                var addresses = endpoints[i]?["addresses"] as JsonArray;
                if (addresses is not { Count: > 0 })
                {
                    causes.Add(new("FieldValueRequired", "Required value: must contain at least 1 address", $"endpoints[{i}].addresses"));
                    continue;
                }

                for (var j = 0; j < addresses.Count; j++)
                {
                    var address = addresses[j] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : "";
                    var family = addressType switch
                    {
                        "IPv4" => AddressFamily.InterNetwork,
                        "IPv6" => AddressFamily.InterNetworkV6,
                        _ => (AddressFamily?)null,
                    };
                    if (family is { } wanted && !(IPAddress.TryParse(address, out var ip) && ip.AddressFamily == wanted && ip.ToString() == address))
                    {
                        causes.Add(new("FieldValueInvalid", $"Invalid value: \"{address}\": must be a valid {addressType} address", $"endpoints[{i}].addresses[{j}]"));
                    }
                }
            }
        }

        if (causes.Count == 0)
        {
            return null;
        }

        var errors = causes.Select(cause => $"{cause.Field}: {cause.Message}").ToList();
        var summary = errors.Count == 1 ? errors[0] : $"[{string.Join(", ", errors)}]";
        return new(422, "Invalid", $"EndpointSlice.discovery.k8s.io \"{name}\" is invalid: {summary}", new StatusDetails(name, Group, "EndpointSlice", Causes: causes));
    }

    private static async Task<(JsonObject? Body, ApiStatus? Error)> ReadAsync(HttpContext context)
    {
        if (context.Request.ContentType?.Split(';')[0].Trim().Equals("application/json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return (null, new ApiStatus(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"));
        }

        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        if (buffer.Length > MaxBodyBytes)
        {
            return (null, new ApiStatus(413, "RequestEntityTooLarge", $"Request entity too large: limit is {MaxBodyBytes}"));
        }

        try
        {
            return JsonNode.Parse(buffer.ToArray()) is JsonObject body
                ? (body, null)
                : (null, new ApiStatus(400, "BadRequest", "Object 'Kind' is missing in the request body"));
        }
        catch (JsonException e)
        {
            return (null, new ApiStatus(400, "BadRequest", e.Message));
        }
    }

    private static byte[] Serialize(JsonObject slice) => JsonSerializer.SerializeToUtf8Bytes(slice);

    private static StatusDetails Details(string? name) => new(name, Group, Resource);

    private static string? BearerToken(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string Scheme = "Bearer ";
        return header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) && header[Scheme.Length..].Trim() is { Length: > 0 } token ? token : null;
    }
}
