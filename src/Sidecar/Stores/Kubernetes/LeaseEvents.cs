using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// <c>--events</c>: a Kubernetes Event on the Lease when this replica becomes leader, stops leading
/// (with the reason) and releases the lease, shaped as client-go's event recorder writes them
/// (reason <c>LeaderElection</c>, type <c>Normal</c>, name <c>LEASE.&lt;hex nanoseconds&gt;</c>).
/// </summary>
/// <remarks>
/// It only watches the published status and never delays the election: a status change puts an
/// event in a bounded queue (a full queue drops it, counted), and a background sender posts them
/// one at a time, each within the request timeout. A failed post is counted and logged at most once
/// a minute; it is not retried. On shutdown the queue gets a short budget to drain after the release.
/// </remarks>
internal sealed partial class LeaseEvents : IHostedService, IDisposable
{
    /// <summary>Events waiting to be sent; more are dropped. A leadership change makes at most three.</summary>
    public const int QueueCapacity = 32;

    /// <summary>The reporting component, as a controller's recorder names itself.</summary>
    public const string Component = "leader-sidecar";

    /// <summary><c>--events true|false</c>.</summary>
    public static readonly StoreFlag Flag = new(
        "events",
        "true|false",
        "Record a Kubernetes Event on the Lease when this replica becomes leader, stops leading (with the reason) and releases it; needs create on events.",
        "false",
        (s, v) => v.ToUpperInvariant() switch
        {
            "TRUE" => s.Set<LeaseEventsSettings>(e => e with { Enabled = true }),
            "FALSE" => s.Set<LeaseEventsSettings>(e => e with { Enabled = false }),
            _ => $"expected true or false, not \"{v}\"",
        });

    private static readonly TimeSpan FailureLogInterval = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan DrainBudget = TimeSpan.FromSeconds(2);

    private readonly Channel<EventObject> _queue = Channel.CreateBounded<EventObject>(new BoundedChannelOptions(QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly ApiClient _api;
    private readonly LeadershipState _state;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action<string> _counted;
    private readonly CancellationTokenSource _stopping = new();
    private LeadershipStatus? _previous;
    private bool _releasePending;
    private long _lastNanos;
    private long? _lastFailureLogAt;
    private Task _sender = Task.CompletedTask;

    /// <param name="counted">Told each event's fate: <c>sent</c>, <c>failed</c> or <c>dropped</c>.</param>
    public LeaseEvents(ApiClient api, LeadershipState state, TimeSpan requestTimeout, TimeProvider time, ILogger<LeaseEvents> logger, Action<string> counted)
    {
        _api = api;
        _state = state;
        _requestTimeout = requestTimeout;
        _time = time;
        _logger = logger;
        _counted = counted;
    }

    /// <summary>With <c>--events true</c>: records events beside the Kubernetes store, stopping after the election does.</summary>
    public static void Register(IServiceCollection services, ApiClient api, SidecarOptions options, TimeProvider time)
    {
        if (options.Stores.Get<LeaseEventsSettings>().Enabled)
        {
            services.AddHostedService(s => new LeaseEvents(
                api,
                s.GetRequiredService<LeadershipState>(),
                options.Election.RequestTimeout,
                time,
                s.GetRequiredService<ILogger<LeaseEvents>>(),
                s.GetRequiredService<SidecarMetrics>().EventRecorded));
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _sender = SendAllAsync(_stopping.Token);
        _state.Subscribe(OnStatus);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // Stopped after the election (hosted services stop in reverse order): the step-down and the
        // release are queued by now. They get a short budget, then whatever is left is abandoned.
        _queue.Writer.TryComplete();
        using var budget = new CancellationTokenSource(DrainBudget, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(budget.Token, cancellationToken);
        try
        {
            await _sender.WaitAsync(linked.Token);
        }
        catch (OperationCanceledException)
        {
            await _stopping.CancelAsync();
        }
    }

    public void Dispose() => _stopping.Dispose();

    /// <summary>Called synchronously with every published status: only decides and enqueues.</summary>
    internal void OnStatus(LeadershipStatus status)
    {
        var wasLeader = _previous?.IsLeader ?? false;
        _previous = status;
        if (status.IsLeader && !wasLeader)
        {
            _releasePending = false;
            Enqueue(status, "became leader");
            return;
        }

        if (wasLeader && !status.IsLeader)
        {
            _releasePending = true;
            Enqueue(status, $"stopped leading: {StepDownReason(status)}");
        }

        if (_releasePending && status.Role == Role.Follower)
        {
            if (status.Holder.Length == 0)
            {
                _releasePending = false;
                Enqueue(status, "released the lease");
            }
            else if (status.Holder != status.Identity)
            {
                // Someone else holds it: there was no release of ours to report.
                _releasePending = false;
            }
        }
    }

    private static string StepDownReason(LeadershipStatus status) => status switch
    {
        { Role: Role.Follower, Holder: "" } => "released the lease",
        { Role: Role.Follower } when status.Holder == status.Identity => "stepping down to release the lease (shutdown, resign, hand-over or unhealthy app)",
        { Role: Role.Follower } => $"the lease is now held by {status.Holder}",
        _ => "the lease could not be renewed within the renew deadline",
    };

    private void Enqueue(LeadershipStatus status, string what)
    {
        var now = _time.GetUtcNow();

        // client-go names an event LEASE.<hex UnixNano>; two in one tick would collide (409), so never repeat.
        var nanos = (now.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) * 100;
        nanos = _lastNanos = Math.Max(nanos, _lastNanos + 1);
        var timestamp = now.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        var item = new EventObject
        {
            Metadata = new EventMetadata { Name = $"{status.LeaseName}.{nanos:x}", Namespace = status.LeaseNamespace },
            InvolvedObject = new ObjectReference
            {
                Kind = "Lease",
                ApiVersion = "coordination.k8s.io/v1",
                Namespace = status.LeaseNamespace,
                Name = status.LeaseName,
                Uid = status.LeaseUid.Length > 0 ? status.LeaseUid : null,
            },
            Reason = "LeaderElection",
            Message = $"{status.Identity} {what}",
            Source = new EventSource { Component = Component, Host = status.Identity },
            FirstTimestamp = timestamp,
            LastTimestamp = timestamp,
            Count = 1,
            Type = "Normal",
            ReportingComponent = Component,
            ReportingInstance = status.Identity,
        };

        if (!_queue.Writer.TryWrite(item))
        {
            _counted("dropped");
        }
    }

    private async Task SendAllAsync(CancellationToken ct)
    {
        try
        {
            await foreach (var item in _queue.Reader.ReadAllAsync(ct))
            {
                await SendAsync(item, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task SendAsync(EventObject item, CancellationToken ct)
    {
        string? problem;
        try
        {
            var uri = $"{_api.BaseUri.ToString().TrimEnd('/')}/api/v1/namespaces/{Uri.EscapeDataString(item.Metadata!.Namespace!)}/events";
            using var response = await RequestTimeout.WithinAsync(
                "event",
                _requestTimeout,
                _time,
                async token =>
                {
                    using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = JsonContent.Create(item, EventJsonContext.Default.EventObject) };
                    await _api.AuthorizeAsync(request, token);
                    return await _api.Http.SendAsync(request, token);
                },
                ct);
            problem = response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode}";
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            problem = KubernetesLeaseStore.Shorten(e.Message);
        }

        _counted(problem is null ? "sent" : "failed");
        if (problem is not null && (_lastFailureLogAt is not { } last || _time.GetElapsedTime(last) >= FailureLogInterval))
        {
            _lastFailureLogAt = _time.GetTimestamp();
            LogEventFailed(_logger, item.Message ?? "", problem);
        }
    }

    [LoggerMessage(EventId = 610, EventName = "EventFailed", Level = LogLevel.Warning,
        Message = "Could not record the Kubernetes Event \"{Event}\" ({Problem}); the election is unaffected (logged at most once a minute, counted in leader_sidecar_events_total)")]
    private static partial void LogEventFailed(ILogger logger, string @event, string problem);
}

/// <summary><c>--events</c>.</summary>
internal sealed record LeaseEventsSettings
{
    public bool Enabled { get; init; }
}

/// <summary>A core/v1 Event, the fields client-go's recorder fills.</summary>
internal sealed class EventObject
{
    public string ApiVersion { get; set; } = "v1";

    public string Kind { get; set; } = "Event";

    public EventMetadata? Metadata { get; set; }

    public ObjectReference? InvolvedObject { get; set; }

    public string? Reason { get; set; }

    public string? Message { get; set; }

    public EventSource? Source { get; set; }

    public string? FirstTimestamp { get; set; }

    public string? LastTimestamp { get; set; }

    public int Count { get; set; }

    public string? Type { get; set; }

    public string? ReportingComponent { get; set; }

    public string? ReportingInstance { get; set; }
}

internal sealed class EventMetadata
{
    public string? Name { get; set; }

    public string? Namespace { get; set; }
}

internal sealed class ObjectReference
{
    public string? Kind { get; set; }

    public string? Namespace { get; set; }

    public string? Name { get; set; }

    public string? Uid { get; set; }

    public string? ApiVersion { get; set; }
}

internal sealed class EventSource
{
    public string? Component { get; set; }

    public string? Host { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(EventObject))]
internal sealed partial class EventJsonContext : JsonSerializerContext;
