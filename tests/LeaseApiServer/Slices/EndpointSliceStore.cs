using System.Globalization;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Testing.LeaseApi.Slices;

/// <summary>
/// The server's <c>discovery.k8s.io/v1</c> EndpointSlices, kept as the JSON the API serves. Writes take
/// their resourceVersion from the same revision counter as the Leases (etcd has one for everything).
/// Methods here bypass HTTP, auth and faults, so a test can create a slice as the manifests would and
/// edit it by hand as <c>kubectl edit</c> would.
/// </summary>
public sealed class EndpointSliceStore
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Namespace, string Name), JsonObject> _slices = [];
    private readonly Func<long> _nextRevision;
    private readonly TimeProvider _time;

    internal EndpointSliceStore(Func<long> nextRevision, TimeProvider time)
    {
        _nextRevision = nextRevision;
        _time = time;
    }

    /// <summary>A copy of the stored slice, or null.</summary>
    public JsonObject? Get(string namespaceName, string name)
    {
        lock (_gate)
        {
            return _slices.GetValueOrDefault((namespaceName, name))?.DeepClone().AsObject();
        }
    }

    /// <summary>The addresses of every endpoint of the slice, in order (empty when it has none or does not exist).</summary>
    public IReadOnlyList<string> Addresses(string namespaceName, string name) =>
        Get(namespaceName, name)?["endpoints"] is JsonArray endpoints
            ? [.. endpoints.SelectMany(e => e?["addresses"] as JsonArray ?? []).Select(a => (string?)a ?? "")]
            : [];

    /// <summary>
    /// Creates the slice a selector-less Service <paramref name="service"/> routes to, as the manifests
    /// do: <c>kubernetes.io/service-name</c> and the managed-by label, the given ports, no endpoints.
    /// </summary>
    public JsonObject CreateForService(string namespaceName, string name, string service, string addressType = "IPv4", int port = 8080)
    {
        var slice = new JsonObject
        {
            ["apiVersion"] = "discovery.k8s.io/v1",
            ["kind"] = "EndpointSlice",
            ["metadata"] = new JsonObject
            {
                ["name"] = name,
                ["namespace"] = namespaceName,
                ["labels"] = new JsonObject
                {
                    ["kubernetes.io/service-name"] = service,
                    ["endpointslice.kubernetes.io/managed-by"] = "leader-sidecar",
                },
            },
            ["addressType"] = addressType,
            ["endpoints"] = new JsonArray(),
            ["ports"] = new JsonArray(new JsonObject { ["name"] = "http", ["protocol"] = "TCP", ["port"] = port }),
        };
        return Write(namespaceName, name, _ => slice, out _)!;
    }

    /// <summary>Replaces the endpoints unconditionally, as a hand edit would.</summary>
    /// <exception cref="KeyNotFoundException">The slice does not exist.</exception>
    public JsonObject SetAddresses(string namespaceName, string name, params string[] addresses) =>
        Write(namespaceName, name, current =>
        {
            var next = current?.DeepClone().AsObject() ?? throw new KeyNotFoundException($"endpointslice {namespaceName}/{name} does not exist");
            next["endpoints"] = new JsonArray([.. addresses.Select(a => (JsonNode)new JsonObject
            {
                ["addresses"] = new JsonArray(a),
                ["conditions"] = new JsonObject { ["ready"] = true },
            })]);
            return next;
        }, out _)!;

    /// <returns>Whether the slice existed.</returns>
    public bool Delete(string namespaceName, string name)
    {
        lock (_gate)
        {
            return _slices.Remove((namespaceName, name));
        }
    }

    /// <summary>
    /// The one write path: <paramref name="decide"/> sees the current slice (or null) under the lock and
    /// returns the next one (or null to leave it), which makes compare-and-swap atomic. The store owns
    /// uid, resourceVersion, generation and creationTimestamp. <paramref name="written"/> says whether it wrote.
    /// </summary>
    internal JsonObject? Write(string namespaceName, string name, Func<JsonObject?, JsonObject?> decide, out bool written)
    {
        lock (_gate)
        {
            var current = _slices.GetValueOrDefault((namespaceName, name));
            var next = decide(current?.DeepClone().AsObject());
            written = next is not null;
            if (next is null)
            {
                return current?.DeepClone().AsObject();
            }

            var given = next["metadata"] as JsonObject ?? [];
            var metadata = new JsonObject
            {
                ["name"] = name,
                ["namespace"] = namespaceName,
                ["uid"] = (string?)current?["metadata"]?["uid"] ?? Guid.NewGuid().ToString(),
                ["resourceVersion"] = _nextRevision().ToString(CultureInfo.InvariantCulture),
                ["generation"] = ((long?)current?["metadata"]?["generation"] ?? 0) + 1,
                ["creationTimestamp"] = (string?)current?["metadata"]?["creationTimestamp"]
                    ?? _time.GetUtcNow().ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            };
            foreach (var key in new[] { "labels", "annotations", "ownerReferences" })
            {
                if (given[key] is { } value)
                {
                    metadata[key] = value.DeepClone();
                }
            }

            // Served in the real server's field order.
            var stored = new JsonObject
            {
                ["kind"] = "EndpointSlice",
                ["apiVersion"] = "discovery.k8s.io/v1",
                ["metadata"] = metadata,
                ["addressType"] = next["addressType"]?.DeepClone(),
            };
            // endpoints is required (no omitempty): Go writes an empty one as null; ports is omitted.
            stored["endpoints"] = next["endpoints"] is JsonArray { Count: > 0 } endpoints ? endpoints.DeepClone() : null;
            if (next["ports"] is JsonArray { Count: > 0 } ports)
            {
                stored["ports"] = ports.DeepClone();
            }

            _slices[(namespaceName, name)] = stored;
            return stored.DeepClone().AsObject();
        }
    }
}
