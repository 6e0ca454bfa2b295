using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Testing.LeaseApi.Tests;

/// <summary>One capture from <c>Golden/</c>: the request a real kube-apiserver got and what it answered.</summary>
internal sealed record GoldenExchange(string? Method, string? Path, string? RequestBody, int StatusCode, IReadOnlyDictionary<string, string> Headers, string Body)
{
    public JsonNode? Json => Body.Length == 0 ? null : JsonNode.Parse(Body);

    public static GoldenExchange Load(string fileName)
    {
        var lines = File.ReadAllLines(System.IO.Path.Combine(AppContext.BaseDirectory, "Golden", fileName));
        string? method = null, path = null, requestBody = null;
        var index = 0;
        for (; lines[index].StartsWith("### ", StringComparison.Ordinal); index++)
        {
            const string BodyPrefix = "### request body: ";
            if (lines[index].StartsWith(BodyPrefix, StringComparison.Ordinal))
            {
                requestBody = lines[index][BodyPrefix.Length..];
            }
            else
            {
                var parts = lines[index][4..].Split(' ');
                (method, path) = (parts[0], parts[1]);
            }
        }

        var statusCode = int.Parse(lines[index++].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        for (; index < lines.Length && lines[index].Length > 0; index++)
        {
            var colon = lines[index].IndexOf(':', StringComparison.Ordinal);
            headers[lines[index][..colon]] = lines[index][(colon + 1)..].Trim();
        }

        var body = string.Join('\n', lines.Skip(index)).Trim();
        return new GoldenExchange(method, path, requestBody, statusCode, headers, body);
    }

    /// <summary>The lines of a captured watch stream.</summary>
    public static IReadOnlyList<JsonNode> LoadStream(string fileName) =>
        File.ReadAllLines(System.IO.Path.Combine(AppContext.BaseDirectory, "Golden", fileName))
            .Where(line => line.Length > 0)
            .Select(line => JsonNode.Parse(line)!)
            .ToList();
}

internal static class Json
{
    // Values that differ on every run (or every server): compared for presence and type only.
    private static readonly HashSet<string> Volatile = new(StringComparer.Ordinal) { "uid", "resourceVersion", "creationTimestamp", "time" };

    /// <summary>
    /// Asserts two answers are the same JSON: same keys in the same order, same values, except that volatile
    /// values only need to be present as non-empty strings (or null where the capture has null).
    /// </summary>
    public static void AssertSameShape(JsonNode? expected, JsonNode? actual)
    {
        Assert.Equal(Normalize(expected)?.ToJsonString(), Normalize(actual)?.ToJsonString());
    }

    public static string Text(JsonNode? node, string path)
    {
        var current = node;
        foreach (var part in path.Split('.'))
        {
            current = current?[part];
        }

        return current?.ToString() ?? throw new Xunit.Sdk.XunitException($"no {path} in {node?.ToJsonString()}");
    }

    private static JsonNode? Normalize(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                var copy = new JsonObject();
                foreach (var (key, value) in obj)
                {
                    copy[key] = Volatile.Contains(key) && value is JsonValue
                        ? JsonValue.Create(value.ToString().Length > 0 ? "<volatile>" : "")
                        : Normalize(value);
                }

                return copy;
            case JsonArray array:
                return new JsonArray(array.Select(Normalize).ToArray());
            default:
                return node?.DeepClone();
        }
    }
}

internal static class Api
{
    public static StringContent JsonBody(string json) => new(json, Encoding.UTF8, new MediaTypeHeaderValue("application/json"));

    public static async Task<(int Code, JsonNode? Json)> SendAsync(HttpClient client, HttpMethod method, string path, string? body = null)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (body is not null)
        {
            request.Content = JsonBody(body);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.Length > 0 && text[0] == '{' ? JsonNode.Parse(text) : null);
    }

    public static string LeaseBody(string name, string holder, string? resourceVersion = null, int duration = 15, string time = "2026-11-25T02:04:12.130207Z")
    {
        var metadata = new JsonObject { ["name"] = name };
        if (resourceVersion is not null)
        {
            metadata["resourceVersion"] = resourceVersion;
        }

        return new JsonObject
        {
            ["apiVersion"] = "coordination.k8s.io/v1",
            ["kind"] = "Lease",
            ["metadata"] = metadata,
            ["spec"] = new JsonObject
            {
                ["holderIdentity"] = holder,
                ["leaseDurationSeconds"] = duration,
                ["acquireTime"] = time,
                ["renewTime"] = time,
                ["leaseTransitions"] = 0,
            },
        }.ToJsonString();
    }
}

/// <summary>Waits for a condition with a deadline instead of sleeping a fixed time.</summary>
internal static class Eventually
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        using var deadline = new CancellationTokenSource(Deadline);
        using var poll = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        while (!condition())
        {
            if (deadline.IsCancellationRequested)
            {
                throw new Xunit.Sdk.XunitException($"timed out waiting until {what}");
            }

            await poll.WaitForNextTickAsync(CancellationToken.None);
        }
    }
}

/// <summary>Reads a watch response one event line at a time, each read bounded by a deadline.</summary>
internal sealed class WatchReader : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private WatchReader(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public int StatusCode => (int)_response.StatusCode;

    public HttpResponseMessage Response => _response;

    public static async Task<WatchReader> OpenAsync(HttpClient client, string pathAndQuery)
    {
        var response = await client.GetAsync(pathAndQuery.TrimStart('/'), HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        return new WatchReader(response, new StreamReader(stream));
    }

    /// <summary>The next event, or null when the server ended the stream.</summary>
    public async Task<JsonNode?> NextAsync()
    {
        using var deadline = new CancellationTokenSource(Eventually.Deadline);
        var line = await _reader.ReadLineAsync(deadline.Token);
        return line is null ? null : JsonNode.Parse(line);
    }

    /// <summary>The rest of the body, e.g. the Status of a refused watch.</summary>
    public Task<string> ReadToEndAsync() => _reader.ReadToEndAsync();

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        return ValueTask.CompletedTask;
    }
}
