using System.Text.Json.Nodes;

namespace LeaderSidecar.Testing.LeaseApi.Storage;

/// <summary>core/v1 Events created through the API, in order, as stored (with uid and resourceVersion).</summary>
public sealed class EventLog
{
    private readonly Lock _gate = new();
    private readonly List<JsonObject> _events = [];

    /// <summary>Every event stored so far (copies).</summary>
    public IReadOnlyList<JsonObject> All
    {
        get
        {
            lock (_gate)
            {
                return [.. _events.Select(e => e.DeepClone().AsObject())];
            }
        }
    }

    /// <summary>The events of one namespace (copies).</summary>
    public IReadOnlyList<JsonObject> In(string namespaceName) =>
        [.. All.Where(e => (string?)e["metadata"]?["namespace"] == namespaceName)];

    /// <summary>Stores <paramref name="item"/>; false when an event of that name exists in the namespace.</summary>
    internal bool TryAdd(JsonObject item)
    {
        lock (_gate)
        {
            var name = (string?)item["metadata"]?["name"];
            var namespaceName = (string?)item["metadata"]?["namespace"];
            if (_events.Any(e => (string?)e["metadata"]?["name"] == name && (string?)e["metadata"]?["namespace"] == namespaceName))
            {
                return false;
            }

            _events.Add(item.DeepClone().AsObject());
            return true;
        }
    }
}
