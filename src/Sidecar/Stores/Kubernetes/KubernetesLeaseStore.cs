using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using k8s;
using k8s.Autorest;
using k8s.Models;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// A <c>coordination.k8s.io/v1</c> Lease, read and written the way client-go's <c>LeaseLock</c> does:
/// replace (PUT) with the cached object's <c>resourceVersion</c>, so a 409 means someone else wrote
/// first; create on 404. Followers watch the one Lease (<c>fieldSelector=metadata.name=NAME</c>,
/// which an RBAC rule limited by <c>resourceNames</c> allows), resume from the last
/// <c>resourceVersion</c> they saw, and re-list when the server says it is too old (410).
/// </summary>
internal sealed partial class KubernetesLeaseStore : ILeaseStore, IDisposable
{
    private const int CachedObjects = 8;

    // The server ends each watch after this long and we resume: a stale connection cannot live long.
    private const int WatchTimeoutSeconds = 300;

    // With bookmarks on, a live watch carries something at least about once a minute; silence this
    // long means a dead connection (a half-open TCP socket never errors by itself).
    private static readonly TimeSpan WatchIdleTimeout = TimeSpan.FromSeconds(90);
    private readonly TimeProvider _time;
    private readonly k8s.Kubernetes _client;
    private readonly string _namespace;
    private readonly string _name;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();

    // Recently seen Lease objects by resourceVersion: an update sends back the whole object it read
    // (labels, annotations, owner references) with only the spec changed, as client-go does.
    private readonly List<V1Lease> _seen = [];

    // Where the next watch resumes: the newest resourceVersion seen and the lease as of then.
    private string? _resumeVersion;
    private LeaseSnapshot? _resumeLease;

    public KubernetesLeaseStore(KubernetesClientConfiguration config, string @namespace, string name, TimeProvider time, ILogger<KubernetesLeaseStore> logger)
    {
        _time = time;
        _client = new k8s.Kubernetes(config);
        _namespace = @namespace;
        _name = name;
        _logger = logger;
        Description = $"kubernetes lease {@namespace}/{name} at {config.Host}";
    }

    public string Description { get; }

    public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
    {
        try
        {
            var lease = await _client.CoordinationV1.ReadNamespacedLeaseAsync(_name, _namespace, cancellationToken: cancellationToken);
            return Remember(lease);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (Exception e) when (Failure(e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        var lease = new V1Lease
        {
            ApiVersion = "coordination.k8s.io/v1",
            Kind = "Lease",
            Metadata = new V1ObjectMeta { Name = _name, NamespaceProperty = _namespace },
            Spec = ToSpec(record),
        };
        try
        {
            return Remember(await _client.CoordinationV1.CreateNamespacedLeaseAsync(lease, _namespace, cancellationToken: cancellationToken));
        }
        catch (Exception e) when (Failure(e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        V1Lease? seen;
        lock (_gate)
        {
            seen = _seen.FindLast(l => l.Metadata?.ResourceVersion == current.Version);
        }

        var lease = new V1Lease
        {
            ApiVersion = "coordination.k8s.io/v1",
            Kind = "Lease",
            // managedFields stay out: omitted in an update they are left as they are, and the AOT
            // client cannot serialize their free-form fieldsV1.
            Metadata = seen?.Metadata is { } metadata
                ? metadata with { ManagedFields = null }
                : new V1ObjectMeta { Name = _name, NamespaceProperty = _namespace, ResourceVersion = current.Version, Uid = current.Uid },
            Spec = ToSpec(record),
        };
        try
        {
            return Remember(await _client.CoordinationV1.ReplaceNamespacedLeaseAsync(lease, _name, _namespace, cancellationToken: cancellationToken));
        }
        catch (Exception e) when (Failure(e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string? version;
        LeaseSnapshot? state;
        lock (_gate)
        {
            (version, state) = (_resumeVersion, _resumeLease);
        }

        if (version is null)
        {
            (version, state) = await ListAsync(cancellationToken);
        }

        yield return state;

        while (true)
        {
            using var response = await OpenWatchAsync(version, cancellationToken);
            if (response is null)
            {
                LogWatchExpired(_logger, version ?? "");
                (version, state) = await ListAsync(cancellationToken);
                yield return state;
                continue;
            }

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
            var expired = false;
            while (await ReadLineAsync(reader, cancellationToken) is { } line)
            {
                if (line.Length == 0)
                {
                    continue;
                }

                var change = ParseEvent(line);
                if (change.Expired)
                {
                    expired = true;
                    break;
                }

                version = change.Version ?? version;
                lock (_gate)
                {
                    _resumeVersion = version;
                    if (change.IsChange)
                    {
                        _resumeLease = change.Lease;
                    }
                }

                if (change.IsChange)
                {
                    yield return change.Lease;
                }
            }

            if (!expired)
            {
                // The server ended the watch (its timeout); the caller reconnects and resumes.
                yield break;
            }

            // 410 Gone: our resourceVersion was compacted away. Re-list and watch from there.
            LogWatchExpired(_logger, version ?? "");
            (version, state) = await ListAsync(cancellationToken);
            yield return state;
        }
    }

    public void Dispose() => _client.Dispose();

    private async Task<(string Version, LeaseSnapshot? Lease)> ListAsync(CancellationToken cancellationToken)
    {
        try
        {
            var list = await _client.CoordinationV1.ListNamespacedLeaseAsync(_namespace, fieldSelector: $"metadata.name={_name}", cancellationToken: cancellationToken);
            var lease = list.Items.FirstOrDefault(l => l.Metadata?.Name == _name);
            var snapshot = lease is null ? null : Remember(lease);
            var version = list.Metadata?.ResourceVersion ?? "";
            lock (_gate)
            {
                (_resumeVersion, _resumeLease) = (version, snapshot);
            }

            return (version, snapshot);
        }
        catch (Exception e) when (Failure(e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>Opens the watch; <see langword="null"/> when the server answers 410 Gone at once.</summary>
    private async Task<HttpResponseMessage?> OpenWatchAsync(string? version, CancellationToken cancellationToken)
    {
        var query = $"watch=true&allowWatchBookmarks=true&timeoutSeconds={WatchTimeoutSeconds}&fieldSelector={Uri.EscapeDataString($"metadata.name={_name}")}";
        if (!string.IsNullOrEmpty(version))
        {
            query += $"&resourceVersion={Uri.EscapeDataString(version)}";
        }

        var baseUri = _client.BaseUri.ToString().TrimEnd('/');
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{baseUri}/apis/coordination.k8s.io/v1/namespaces/{_namespace}/leases?{query}");
        HttpResponseMessage? response = null;
        try
        {
            if (_client.Credentials is { } credentials)
            {
                await credentials.ProcessHttpRequestAsync(request, cancellationToken);
            }

            response = await _client.HttpClient.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (response.StatusCode == HttpStatusCode.Gone)
            {
                response.Dispose();
                return null;
            }

            if (!response.IsSuccessStatusCode)
            {
                var body = await response.Content.ReadAsStringAsync(cancellationToken);
                throw FromStatus(response.StatusCode, body);
            }

            return response;
        }
        catch (Exception e) when (e is not LeaseStoreException && Failure(e, cancellationToken) is { } failure)
        {
            response?.Dispose();
            throw failure;
        }
        catch
        {
            response?.Dispose();
            throw;
        }
    }

    private async Task<string?> ReadLineAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        using var idle = new CancellationTokenSource(WatchIdleTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        try
        {
            return await reader.ReadLineAsync(linked.Token);
        }
        catch (OperationCanceledException e) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Timeout, $"lease watch silent for {WatchIdleTimeout.TotalSeconds:0} s; reconnecting", e);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Unavailable, $"lease watch connection lost: {e.Message}", e);
        }
    }

    private WatchChange ParseEvent(string line)
    {
        WatchEventDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(line, WatchJsonContext.Default.WatchEventDocument);
        }
        catch (JsonException e)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"malformed watch event: {e.Message}", e);
        }

        switch (document?.Type)
        {
            case "ADDED" or "MODIFIED":
                var lease = KubernetesJson.Deserialize<V1Lease>(document.Object);
                return new WatchChange(lease.Metadata?.ResourceVersion, Remember(lease), IsChange: true, Expired: false);
            case "DELETED":
                var deleted = KubernetesJson.Deserialize<V1Lease>(document.Object);
                return new WatchChange(deleted.Metadata?.ResourceVersion, null, IsChange: true, Expired: false);
            case "BOOKMARK":
                var version = document.Object.TryGetProperty("metadata", out var metadata) && metadata.TryGetProperty("resourceVersion", out var rv)
                    ? rv.GetString()
                    : null;
                return new WatchChange(version, null, IsChange: false, Expired: false);
            case "ERROR":
                var status = KubernetesJson.Deserialize<V1Status>(document.Object);
                if (status.Code == 410)
                {
                    return new WatchChange(null, null, IsChange: false, Expired: true);
                }

                throw FromStatus((HttpStatusCode)(status.Code ?? 500), document.Object.GetRawText());
            default:
                throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"unexpected watch event type \"{document?.Type}\"");
        }
    }

    /// <summary>Maps a Lease object to a snapshot, remembering it for the next update.</summary>
    private LeaseSnapshot Remember(V1Lease lease)
    {
        lock (_gate)
        {
            _seen.Add(lease);
            if (_seen.Count > CachedObjects)
            {
                _seen.RemoveAt(0);
            }
        }

        var spec = lease.Spec ?? new V1LeaseSpec();
        var record = new LeaseRecord(
            spec.HolderIdentity ?? "",
            spec.LeaseDurationSeconds ?? 0,
            ToOffset(spec.AcquireTime),
            ToOffset(spec.RenewTime),
            spec.LeaseTransitions ?? 0);
        return new LeaseSnapshot(record, lease.Metadata?.ResourceVersion ?? "", lease.Metadata?.Uid ?? "");
    }

    private static V1LeaseSpec ToSpec(LeaseRecord record) => new()
    {
        HolderIdentity = record.HolderIdentity,
        LeaseDurationSeconds = record.LeaseDurationSeconds,
        AcquireTime = ToMicroTime(record.AcquireTime),
        RenewTime = ToMicroTime(record.RenewTime),
        LeaseTransitions = record.LeaseTransitions,
    };

    private static DateTimeOffset? ToOffset(DateTime? time) =>
        time is { } t ? new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc)) : null;

    private static DateTime? ToMicroTime(DateTimeOffset? time)
    {
        if (time is not { } t)
        {
            return null;
        }

        // The client writes a whole second without a fraction, which the API server's strict
        // MicroTime parser (RFC 3339 with exactly six digits) rejects: nudge it by a microsecond.
        var ticks = t.UtcTicks - (t.UtcTicks % 10);
        if (ticks % TimeSpan.TicksPerSecond == 0)
        {
            ticks += 10;
        }

        return new DateTime(ticks, DateTimeKind.Utc);
    }

    /// <summary>Turns a client exception into a <see cref="LeaseStoreException"/>; null lets cancellation through.</summary>
    private static LeaseStoreException? Failure(Exception e, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => null,
        LeaseStoreException => null,
        HttpOperationException http => FromStatus(http.Response.StatusCode, http.Response.Content),
        HttpRequestException or IOException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"API server unreachable: {e.Message}", e),
        OperationCanceledException => new LeaseStoreException(LeaseStoreFailure.Timeout, "request timed out", e),
        _ => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{e.GetType().Name}: {e.Message}", e),
    };

    private static LeaseStoreException FromStatus(HttpStatusCode code, string? body)
    {
        var reason = (int)code switch
        {
            401 => LeaseStoreFailure.Unauthorized,
            403 => LeaseStoreFailure.Forbidden,
            404 => LeaseStoreFailure.NotFound,
            409 => LeaseStoreFailure.Conflict,
            429 => LeaseStoreFailure.Throttled,
            >= 500 => LeaseStoreFailure.ServerError,
            _ => LeaseStoreFailure.Invalid,
        };
        return new LeaseStoreException(reason, $"HTTP {(int)code}: {StatusMessage(body)}");
    }

    /// <summary>The <c>message</c> of a Kubernetes Status body, else the body's first line, shortened.</summary>
    private static string StatusMessage(string? body)
    {
        if (string.IsNullOrWhiteSpace(body))
        {
            return "(no body)";
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object &&
                document.RootElement.TryGetProperty("message", out var message) &&
                message.ValueKind == JsonValueKind.String)
            {
                return Shorten(message.GetString()!);
            }
        }
        catch (JsonException)
        {
        }

        return Shorten(body.Split('\n')[0]);
    }

    private static string Shorten(string text) => text.Length <= 300 ? text : string.Concat(text.AsSpan(0, 300), "…");

    [LoggerMessage(EventId = 600, EventName = "WatchExpired", Level = LogLevel.Information,
        Message = "Lease watch from resourceVersion {ResourceVersion} is too old (410 Gone); re-listing")]
    private static partial void LogWatchExpired(ILogger logger, string resourceVersion);

    private readonly record struct WatchChange(string? Version, LeaseSnapshot? Lease, bool IsChange, bool Expired);
}

/// <summary>One line of a watch stream: <c>{"type": ..., "object": {...}}</c>.</summary>
internal sealed record WatchEventDocument(string? Type, JsonElement Object);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(WatchEventDocument))]
internal sealed partial class WatchJsonContext : JsonSerializerContext;
