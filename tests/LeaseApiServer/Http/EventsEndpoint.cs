using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Storage;
using Microsoft.AspNetCore.Http;

namespace LeaderSidecar.Testing.LeaseApi.Http;

/// <summary>
/// <c>POST</c> and <c>GET</c> (list) of core/v1 Events at <c>/api/v1/namespaces/NS/events</c>, enough for a
/// recorder: authentication (401), RBAC on <c>events</c> (403, worded as for the core group), the namespace
/// check (400), a duplicate name (409), then 201 with the stored object (uid, resourceVersion and
/// creationTimestamp added). No validation beyond that, no watch, no field selectors.
/// </summary>
internal sealed class EventsEndpoint(TokenRegistry tokens, EventLog events, LeaseStore store, TimeProvider time)
{
    private const string Prefix = "/api/v1/namespaces/";

    /// <summary>The namespace of an events collection path, or <see langword="null"/> for any other path.</summary>
    public static string? Namespace(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        if (!path.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }

        var rest = path[Prefix.Length..].Split('/', StringSplitOptions.RemoveEmptyEntries);
        return rest is [var ns, "events"] ? ns : null;
    }

    public async Task ServeAsync(HttpContext context, string namespaceName)
    {
        var request = context.Request;
        var verb = request.Method switch
        {
            "POST" => ApiVerb.Create,
            "GET" => ApiVerb.List,
            _ => (ApiVerb?)null,
        };
        if (verb is null)
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"));
            return;
        }

        var header = request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
        var user = tokens.Authenticate(token);
        if (user is null)
        {
            await LeaseApiHandler.WriteStatusAsync(context, LeaseStatuses.Unauthorized());
            return;
        }

        if (!tokens.AuthorizeEvents(user, verb.Value, namespaceName))
        {
            var message = $"events is forbidden: User \"{user.Name}\" cannot {verb.Value.ToRbacVerb()} resource \"events\" in API group \"\" in the namespace \"{namespaceName}\"";
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(403, "Forbidden", message, new StatusDetails(Kind: "events")));
            return;
        }

        if (verb == ApiVerb.List)
        {
            var list = new JsonObject
            {
                ["kind"] = "EventList",
                ["apiVersion"] = "v1",
                ["metadata"] = new JsonObject { ["resourceVersion"] = store.Revision.ToString(CultureInfo.InvariantCulture) },
                ["items"] = new JsonArray([.. events.In(namespaceName)]),
            };
            await LeaseApiHandler.WriteJsonAsync(context, 200, Encoding.UTF8.GetBytes(list.ToJsonString()));
            return;
        }

        JsonObject item;
        try
        {
            item = JsonNode.Parse(await ReadAsync(context))?.AsObject() ?? throw new JsonException("null");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            await LeaseApiHandler.WriteStatusAsync(context, LeaseStatuses.BadRequest($"the body is not an Event: {e.Message}"));
            return;
        }

        var metadata = item["metadata"] as JsonObject ?? [];
        item["metadata"] = metadata;
        var bodyNamespace = (string?)metadata["namespace"];
        if (bodyNamespace is not null && bodyNamespace != namespaceName)
        {
            await LeaseApiHandler.WriteStatusAsync(context, LeaseStatuses.BadRequest("the namespace of the provided object does not match the namespace sent on the request"));
            return;
        }

        metadata["namespace"] = namespaceName;
        metadata["uid"] = Guid.NewGuid().ToString();
        metadata["resourceVersion"] = store.Revision.ToString(CultureInfo.InvariantCulture);
        metadata["creationTimestamp"] = time.GetUtcNow().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        var name = (string?)metadata["name"] ?? "";
        if (!events.TryAdd(item))
        {
            await LeaseApiHandler.WriteStatusAsync(context, new ApiStatus(409, "AlreadyExists", $"events \"{name}\" already exists", new StatusDetails(Name: name, Kind: "events")));
            return;
        }

        await LeaseApiHandler.WriteJsonAsync(context, 201, Encoding.UTF8.GetBytes(item.ToJsonString()));
    }

    private static async Task<string> ReadAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        return await reader.ReadToEndAsync(context.RequestAborted);
    }
}
