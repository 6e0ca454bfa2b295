using System.Net;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// A <c>coordination.k8s.io/v1</c> Lease, read and written the way client-go's <c>LeaseLock</c> does:
/// replace (PUT) with the cached object's <c>resourceVersion</c>, so a 409 means someone else wrote
/// first; create on 404. Followers watch the one Lease (<c>fieldSelector=metadata.name=NAME</c>,
/// which an RBAC rule limited by <c>resourceNames</c> allows), resume from the last
/// <c>resourceVersion</c> they saw, and re-list when the server says it is too old (410).
/// The client library provides the connection (TLS, credentials); the requests are ours.
/// </summary>
/// <remarks>
/// Every LIST and every watch open (until the response headers) ends within the request timeout,
/// and a watch whose resourceVersion is too old ends rather than re-listing inside a stream the
/// elector believes healthy: the elector polls, and the next watch lists first. Every answer and
/// every watch line is bounded by <see cref="MaxObjectBytes"/>; server-provided text reaches logs
/// only shortened.
/// </remarks>
internal sealed partial class KubernetesLeaseStore : ILeaseStore, IDisposable
{
    /// <summary>
    /// The most bytes read for one answer or one watch line. etcd refuses writes over 1.5 MiB, so no
    /// stored object is larger; a real Lease is a few kilobytes. 2 MiB leaves room for the JSON
    /// encoding and the watch event around the object and still bounds what a hostile or broken
    /// server can make us hold.
    /// </summary>
    public const int MaxObjectBytes = 2 * 1024 * 1024;

    /// <summary>Server-provided text (a Status message, an unknown event type) is cut to this in messages and logs.</summary>
    public const int MaxMessageChars = 256;

    private const int CachedObjects = 8;

    // Enough of an error body for its Status message; the rest is not read.
    private const int MaxErrorBytes = 64 * 1024;

    // The server ends each watch after this long and we resume: a stale connection cannot live long.
    private const int WatchTimeoutSeconds = 300;

    // A quiet lease sends nothing (many servers send no periodic bookmarks), and the server ends the
    // watch itself after WatchTimeoutSeconds: that is a normal end, not a failure. Only silence past
    // that promise means the connection or the server is broken. A connection whose other end
    // vanished is found sooner by TCP keep-alive (see ApiClient).
    private static readonly TimeSpan WatchIdleTimeout = TimeSpan.FromSeconds(WatchTimeoutSeconds + 30);
    private readonly TimeProvider _time;
    private readonly TimeSpan _requestTimeout;
    private readonly ApiClient _api;
    private readonly string _namespace;
    private readonly string _name;
    private readonly string _collection;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();

    // Recently seen Lease objects by resourceVersion: an update sends back the whole object it read
    // (labels, annotations, owner references) with only the spec changed, as client-go does.
    private readonly List<LeaseObject> _seen = [];

    // The last malformed hand-over annotation logged, so each bad value is logged once.
    private string? _malformedHandOver;

    // Where the next watch resumes: the newest resourceVersion seen and the lease as of then.
    private string? _resumeVersion;
    private LeaseSnapshot? _resumeLease;

    /// <param name="requestTimeout">The longest a LIST or a watch open may take (the elector's request timeout).</param>
    public KubernetesLeaseStore(ApiClient api, string @namespace, string name, TimeSpan requestTimeout, TimeProvider time, ILogger<KubernetesLeaseStore> logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(requestTimeout, TimeSpan.Zero);
        _time = time;
        _requestTimeout = requestTimeout;
        _api = api;
        _namespace = @namespace;
        _name = name;
        _collection = $"{_api.BaseUri.ToString().TrimEnd('/')}/apis/coordination.k8s.io/v1/namespaces/{@namespace}/leases";
        _logger = logger;
        Description = $"kubernetes lease {@namespace}/{name} at {api.Address}";
    }

    public string Description { get; }

    public async Task<LeaseSnapshot?> GetAsync(CancellationToken cancellationToken)
    {
        try
        {
            return Remember(await SendAsync(HttpMethod.Get, $"{_collection}/{_name}", null, LeaseJsonContext.Default.LeaseObject, cancellationToken));
        }
        catch (LeaseStoreException e) when (e.Reason == LeaseStoreFailure.NotFound)
        {
            return null;
        }
    }

    public async Task<LeaseSnapshot> CreateAsync(LeaseRecord record, CancellationToken cancellationToken)
    {
        var lease = new LeaseObject
        {
            ApiVersion = "coordination.k8s.io/v1",
            Kind = "Lease",
            Metadata = new ObjectMetadata { Name = _name, Namespace = _namespace },
            Spec = ToSpec(record, null),
        };
        return Remember(await SendAsync(HttpMethod.Post, _collection, lease, LeaseJsonContext.Default.LeaseObject, cancellationToken));
    }

    public async Task<LeaseSnapshot> UpdateAsync(LeaseSnapshot current, LeaseRecord record, CancellationToken cancellationToken)
    {
        LeaseObject? seen;
        lock (_gate)
        {
            seen = _seen.FindLast(l => l.Metadata?.ResourceVersion == current.Version);
        }

        var metadata = new ObjectMetadata
        {
            Name = _name,
            Namespace = _namespace,
            ResourceVersion = current.Version,
            Uid = current.Uid,
            Annotations = HandOverAnnotation.ForUpdate(seen?.Metadata?.Annotations, current.Record, record),
        };
        if (seen?.Metadata?.Other is { } other)
        {
            // managedFields stay out: omitted in an update, the server keeps them as they are.
            metadata.Other = other.Where(p => p.Key != "managedFields").ToDictionary();
        }

        var lease = new LeaseObject
        {
            ApiVersion = "coordination.k8s.io/v1",
            Kind = "Lease",
            Metadata = metadata,
            Spec = ToSpec(record, seen?.Spec?.Other),
        };
        return Remember(await SendAsync(HttpMethod.Put, $"{_collection}/{_name}", lease, LeaseJsonContext.Default.LeaseObject, cancellationToken));
    }

    public async IAsyncEnumerable<LeaseSnapshot?> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string? version;
        LeaseSnapshot? state;
        lock (_gate)
        {
            (version, state) = (_resumeVersion, _resumeLease);
        }

        // Resume where the last watch stopped; list only when there is nowhere to resume from, or
        // the server says that point is gone (410). Each request ends within the request timeout,
        // and nothing has been yielded yet, so the elector still polls meanwhile.
        HttpResponseMessage? response;
        var listed = false;
        while (true)
        {
            if (version is null)
            {
                (version, state) = await ListAsync(cancellationToken);
                listed = true;
            }

            response = await OpenWatchAsync(version, cancellationToken);
            if (response is not null)
            {
                break;
            }

            Expire(version);
            if (listed)
            {
                // Even the fresh list's version is gone (heavy churn): let the caller back off.
                yield break;
            }

            version = null;
        }

        using (response)
        {
            // The current state goes out only once the watch is open, so the caller can take the
            // first item to mean "watching": a watch that cannot open (forbidden, say) yields nothing.
            yield return state;

            var reader = new WatchLineReader(await response.Content.ReadAsStreamAsync(cancellationToken), MaxObjectBytes);
            while (await ReadLineAsync(reader, cancellationToken) is { } line)
            {
                if (line.IsEmpty)
                {
                    continue;
                }

                var change = ParseEvent(line.Span);
                if (change.Expired)
                {
                    // 410 Gone: our resourceVersion was compacted away. End here, so the elector
                    // marks the watch down and polls, and the next watch lists (within the request
                    // timeout) before it yields: never a re-list inside a stream believed healthy.
                    Expire(version);
                    yield break;
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

            // The server ended the watch (its timeout); the caller reconnects and resumes.
        }
    }

    public void Dispose() => _api.Dispose();

    /// <summary>Forgets where to resume: the server no longer has <paramref name="version"/>, so the next watch lists.</summary>
    private void Expire(string version)
    {
        LogWatchExpired(_logger, Shorten(version));
        lock (_gate)
        {
            (_resumeVersion, _resumeLease) = (null, null);
        }
    }

    private async Task<(string Version, LeaseSnapshot? Lease)> ListAsync(CancellationToken cancellationToken)
    {
        var list = await WithinRequestTimeoutAsync(
            "lease list",
            timeout => SendAsync(HttpMethod.Get, $"{_collection}?fieldSelector={Uri.EscapeDataString($"metadata.name={_name}")}", null, LeaseJsonContext.Default.LeaseList, timeout),
            cancellationToken);
        var lease = list.Items?.FirstOrDefault(l => l.Metadata?.Name == _name);
        var snapshot = lease is null ? null : Remember(lease);
        var version = list.Metadata?.ResourceVersion ?? "";
        lock (_gate)
        {
            (_resumeVersion, _resumeLease) = (version, snapshot);
        }

        return (version, snapshot);
    }

    /// <summary>One request and its JSON answer; any failure becomes a <see cref="LeaseStoreException"/> with its reason.</summary>
    private async Task<T> SendAsync<T>(HttpMethod method, string uri, LeaseObject? body, JsonTypeInfo<T> answer, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, uri);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, LeaseJsonContext.Default.LeaseObject);
        }

        using var response = await SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        try
        {
            var bytes = await ReadBoundedAsync(response.Content, MaxObjectBytes, cancellationToken)
                ?? throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"{method} answer larger than the {MaxObjectBytes}-byte limit");
            return JsonSerializer.Deserialize(bytes.Span, answer)
                ?? throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"{method}: empty answer");
        }
        catch (Exception e) when (Failure(e, cancellationToken) is { } failure)
        {
            throw failure;
        }
    }

    /// <summary>Sends with the connection's credentials; a non-success answer other than 410 Gone throws with its reason.</summary>
    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        HttpResponseMessage? response = null;
        try
        {
            await _api.AuthorizeAsync(request, cancellationToken);
            response = await _api.Http.SendAsync(request, completion, cancellationToken);
            if (!response.IsSuccessStatusCode && response.StatusCode != HttpStatusCode.Gone)
            {
                if (response.StatusCode == HttpStatusCode.Unauthorized)
                {
                    _api.CredentialsRejected();
                }

                throw FromStatus(response.StatusCode, await ReadErrorAsync(response.Content, cancellationToken));
            }

            return response;
        }
        catch (Exception e)
        {
            response?.Dispose();
            if (Failure(e, cancellationToken) is { } failure)
            {
                throw failure;
            }

            throw;
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

        using var request = new HttpRequestMessage(HttpMethod.Get, $"{_collection}?{query}");

        // Only the open is bounded: once the headers are in, the stream runs for minutes.
        var response = await WithinRequestTimeoutAsync(
            "lease watch",
            timeout => SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout),
            cancellationToken);
        if (response.StatusCode == HttpStatusCode.Gone)
        {
            response.Dispose();
            return null;
        }

        return response;
    }

    /// <summary>Runs <paramref name="request"/> with the request timeout; running out of it is a <see cref="LeaseStoreFailure.Timeout"/>.</summary>
    private Task<T> WithinRequestTimeoutAsync<T>(string what, Func<CancellationToken, Task<T>> request, CancellationToken cancellationToken) =>
        RequestTimeout.WithinAsync(what, _requestTimeout, _time, request, cancellationToken);

    /// <summary>The whole body, or <see langword="null"/> when it is longer than <paramref name="limit"/> (not read further).</summary>
    internal static async Task<ReadOnlyMemory<byte>?> ReadBoundedAsync(HttpContent content, int limit, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength > limit)
        {
            return null;
        }

        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[Math.Min(limit + 1, (int?)content.Headers.ContentLength + 1 ?? 16 * 1024)];
        var length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                if (length > limit)
                {
                    return null;
                }

                Array.Resize(ref buffer, (int)Math.Min((long)buffer.Length * 2, (long)limit + 1));
            }

            var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken);
            if (read == 0)
            {
                return buffer.AsMemory(0, length);
            }

            length += read;
        }
    }

    /// <summary>Enough of an error answer for its message; a body cut short only loses detail.</summary>
    internal static async Task<string> ReadErrorAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[MaxErrorBytes];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken)) > 0)
        {
            length += read;
        }

        return System.Text.Encoding.UTF8.GetString(buffer, 0, length);
    }

    private async Task<ReadOnlyMemory<byte>?> ReadLineAsync(WatchLineReader reader, CancellationToken cancellationToken)
    {
        using var idle = new CancellationTokenSource(WatchIdleTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        try
        {
            return await reader.ReadLineAsync(linked.Token);
        }
        catch (OperationCanceledException e) when (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Timeout, $"lease watch silent for {WatchIdleTimeout.TotalSeconds:0} s, past the server's own {WatchTimeoutSeconds} s timeout; reconnecting", e);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Unavailable, $"lease watch connection lost: {e.Message}", e);
        }
    }

    private WatchChange ParseEvent(ReadOnlySpan<byte> line)
    {
        WatchEventDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(line, LeaseJsonContext.Default.WatchEventDocument);
            switch (document?.Type)
            {
                case "ADDED" or "MODIFIED":
                    var lease = document.Object.Deserialize(LeaseJsonContext.Default.LeaseObject)!;
                    return new WatchChange(lease.Metadata?.ResourceVersion, Remember(lease), IsChange: true, Expired: false);
                case "DELETED" or "BOOKMARK":
                    var other = document.Object.Deserialize(LeaseJsonContext.Default.LeaseObject)!;
                    var deleted = document.Type == "DELETED";
                    return new WatchChange(other.Metadata?.ResourceVersion, null, IsChange: deleted, Expired: false);
                case "ERROR":
                    var status = document.Object.Deserialize(LeaseJsonContext.Default.StatusObject)!;
                    if (status.Code == 410)
                    {
                        return new WatchChange(null, null, IsChange: false, Expired: true);
                    }

                    if (status.Code == 401)
                    {
                        _api.CredentialsRejected();
                    }

                    throw FromStatus((HttpStatusCode)(status.Code ?? 500), document.Object.GetRawText());
                default:
                    throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"unexpected watch event type \"{Shorten(document?.Type ?? "")}\"");
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException)
        {
            throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"malformed watch event: {e.Message}", e);
        }
    }

    /// <summary>Maps a Lease object to a snapshot, remembering it for the next update.</summary>
    private LeaseSnapshot Remember(LeaseObject lease)
    {
        lock (_gate)
        {
            _seen.Add(lease);
            if (_seen.Count > CachedObjects)
            {
                _seen.RemoveAt(0);
            }
        }

        var spec = lease.Spec ?? new LeaseObjectSpec();
        var record = new LeaseRecord(
            spec.HolderIdentity ?? "",
            spec.LeaseDurationSeconds ?? 0,
            spec.AcquireTime,
            spec.RenewTime,
            spec.LeaseTransitions ?? 0);
        return new LeaseSnapshot(record, lease.Metadata?.ResourceVersion ?? "", lease.Metadata?.Uid ?? "")
        {
            HandOver = HandOver(lease.Metadata?.Annotations),
        };
    }

    /// <summary>The hand-over request the annotations make; a malformed one is ignored and logged once.</summary>
    private HandOverRequest? HandOver(Dictionary<string, string>? annotations)
    {
        if (annotations?.GetValueOrDefault(HandOverAnnotation.Key) is not { } value)
        {
            return null;
        }

        var request = HandOverAnnotation.Parse(value, out var problem);
        if (problem is not null && Interlocked.Exchange(ref _malformedHandOver, value) != value)
        {
            LogMalformedHandOver(_logger, HandOverAnnotation.Key, Shorten(value), problem);
        }

        return request;
    }

    /// <summary>The spec for <paramref name="record"/>, with the spec fields the election does not manage kept as they were.</summary>
    private static LeaseObjectSpec ToSpec(LeaseRecord record, Dictionary<string, JsonElement>? other) => new()
    {
        HolderIdentity = record.HolderIdentity,
        LeaseDurationSeconds = record.LeaseDurationSeconds,
        AcquireTime = record.AcquireTime,
        RenewTime = record.RenewTime,
        LeaseTransitions = record.LeaseTransitions,
        Other = other,
    };

    /// <summary>Turns a client exception into a <see cref="LeaseStoreException"/>; null lets cancellation through.</summary>
    internal static LeaseStoreException? Failure(Exception e, CancellationToken cancellationToken) => e switch
    {
        OperationCanceledException when cancellationToken.IsCancellationRequested => null,
        LeaseStoreException => null,
        JsonException or NotSupportedException => new LeaseStoreException(LeaseStoreFailure.Invalid, $"unreadable answer: {e.Message}", e),
        HttpRequestException or IOException => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"API server unreachable: {e.Message}", e),
        OperationCanceledException => new LeaseStoreException(LeaseStoreFailure.Timeout, "request timed out", e),
        _ => new LeaseStoreException(LeaseStoreFailure.Unavailable, $"{e.GetType().Name}: {e.Message}", e),
    };

    internal static LeaseStoreException FromStatus(HttpStatusCode code, string? body)
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

    /// <summary>
    /// Server-provided text as it may appear in a log: at most <see cref="MaxMessageChars"/>
    /// characters, on one line (control characters become spaces, so nothing can forge a log line).
    /// </summary>
    internal static string Shorten(string text)
    {
        var cut = text.Length > MaxMessageChars;
        var kept = cut ? text.AsSpan(0, MaxMessageChars - 1) : text.AsSpan();
        if (kept.Length > 0 && char.IsHighSurrogate(kept[^1]))
        {
            kept = kept[..^1];
        }

        return string.Create(kept.Length + (cut ? 1 : 0), (Text: text, Length: kept.Length, Cut: cut), static (span, state) =>
        {
            for (var i = 0; i < state.Length; i++)
            {
                var c = state.Text[i];
                span[i] = char.IsControl(c) ? ' ' : c;
            }

            if (state.Cut)
            {
                span[^1] = '…';
            }
        });
    }

    [LoggerMessage(EventId = 600, EventName = "WatchExpired", Level = LogLevel.Information,
        Message = "Lease watch from resourceVersion {ResourceVersion} is too old (410 Gone); the next watch lists first")]
    private static partial void LogWatchExpired(ILogger logger, string resourceVersion);

    [LoggerMessage(EventId = 601, EventName = "MalformedHandOver", Level = LogLevel.Warning,
        Message = "Ignoring the Lease annotation {Annotation}: \"{Value}\" ({Problem})")]
    private static partial void LogMalformedHandOver(ILogger logger, string annotation, string value, string problem);

    private readonly record struct WatchChange(string? Version, LeaseSnapshot? Lease, bool IsChange, bool Expired);
}
