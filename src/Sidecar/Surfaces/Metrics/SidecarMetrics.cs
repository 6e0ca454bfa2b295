using LeaderSidecar.Election;
using LeaderSidecar.Surfaces.Grpc;
using Prometheus;

namespace LeaderSidecar.Surfaces.Metrics;

/// <summary>
/// The Prometheus metrics of <c>GET /metrics</c>. The elector reports requests through
/// <see cref="IElectionMetrics"/>; role changes are counted from <see cref="LeadershipState"/>; the
/// gauges are read from the state at scrape time, so they agree with every other surface.
/// </summary>
/// <remarks>
/// A private registry: prometheus-net's default one adds process and runtime collectors that are
/// not needed here and are not known to be trim-safe. Every series carries <c>name</c> (the lease
/// name), as client-go's <c>leader_election_*</c> metrics do.
/// </remarks>
internal sealed class SidecarMetrics : IElectionMetrics
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private static readonly double[] LatencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly LeadershipState _state;
    private readonly WatchStreams _streams;
    private readonly TimeProvider _time;
    private readonly string _name;
    private readonly Lock _gate = new();

    private readonly Gauge.Child _masterStatus;
    private readonly Counter.Child _slowPath;
    private readonly Counter.Child _termExhausted;
    private readonly Counter _roleChanges;
    private readonly Gauge _role;
    private readonly Histogram.Child _renewDuration;
    private readonly Counter _renewFailures;
    private readonly Counter _requests;
    private readonly Gauge.Child _claimRemaining;
    private readonly Gauge _observedAge;
    private readonly Gauge _term;
    private readonly Gauge.Child _watchStreams;
    private readonly Gauge.Child _httpWatchStreams;
    private readonly Gauge _holderInfo;
    private readonly Counter _controlRefused;
    private readonly Counter _execExits;
    private readonly Gauge.Child _execRunning;
    private readonly Gauge _appHealthy;
    private readonly Counter.Child _standAsides;
    private readonly Counter _endpointUpdates;
    private readonly Counter _events;

    private Role _lastRole;
    private string? _lastHolder;

    public SidecarMetrics(ElectionOptions options, LeadershipState state, WatchStreams streams, TimeProvider time)
    {
        _state = state;
        _streams = streams;
        _time = time;
        _name = options.LeaseName;
        var factory = Prometheus.Metrics.WithCustomRegistry(_registry);

        _masterStatus = factory.CreateGauge("leader_election_master_status", "1 while this replica leads the lease, else 0 (client-go's name).", "name").WithLabels(_name);
        _slowPath = factory.CreateCounter("leader_election_slowpath_total", "Renews whose fast path conflicted, so the lease was read again (client-go's name).", "name").WithLabels(_name);
        _termExhausted = factory.CreateCounter("leader_sidecar_term_exhausted_total", "Attempts to take the lease refused because its term (leaseTransitions) is at its maximum; delete the lease to start a new one.", "name").WithLabels(_name);
        _roleChanges = factory.CreateCounter("leader_sidecar_role_changes_total", "Changes of this replica's role, by the role changed to.", "name", "role");
        _role = factory.CreateGauge("leader_sidecar_role", "1 for this replica's current role, 0 for the others.", "name", "role");
        _renewDuration = factory.CreateHistogram(
            "leader_sidecar_renew_duration_seconds",
            "Duration of the leader's renew writes, successful or not.",
            new HistogramConfiguration { LabelNames = ["name"], Buckets = LatencyBuckets }).WithLabels(_name);
        _renewFailures = factory.CreateCounter("leader_sidecar_renew_failures_total", "Failed lease-store requests while renewing, by reason.", "name", "reason");
        _requests = factory.CreateCounter("leader_sidecar_lease_requests_total", "Lease-store requests by verb and result (ok, or the failure reason).", "name", "verb", "result");
        _claimRemaining = factory.CreateGauge("leader_sidecar_claim_remaining_seconds", "Seconds until this replica's claim runs out unless renewed; 0 when not leader.", "name").WithLabels(_name);
        _observedAge = factory.CreateGauge("leader_sidecar_lease_observed_age_seconds", "Seconds since the lease was last read or watched successfully (absent before the first time).", "name");
        _term = factory.CreateGauge("leader_sidecar_term", "Fencing term (leaseTransitions when the current holder acquired); absent while unknown.", "name");
        _watchStreams = factory.CreateGauge("leader_sidecar_grpc_watch_streams", "Open gRPC Watch streams.", "name").WithLabels(_name);
        _httpWatchStreams = factory.CreateGauge("leader_sidecar_http_watch_streams", "Open HTTP /watch streams (server-sent events).", "name").WithLabels(_name);
        _holderInfo = factory.CreateGauge("leader_sidecar_holder_info", "Always 1; the holder label is the observed holder (empty when none or unknown).", "name", "identity", "holder");
        _controlRefused = factory.CreateCounter("leader_sidecar_grpc_control_refused_total", "gRPC calls that would change leadership (Resign, ConfirmStopped), refused because the caller may not.", "name", "method");
        _execExits = factory.CreateCounter("leader_sidecar_exec_exits_total", "Ends of the exec-mode command, by reason: exited (by itself, code 0), failed (by itself with another code or a signal, or it could not start), stopped (leadership ended and it exited within the grace), killed (SIGKILL after the grace).", "name", "reason");
        _execRunning = factory.CreateGauge("leader_sidecar_exec_running", "1 while the exec-mode command runs, else 0.", "name").WithLabels(_name);
        _appHealthy = factory.CreateGauge("leader_sidecar_app_healthy", "1 while the app's own health check (--app-health-url) says this replica is fit to lead, else 0; absent without the flag.", "name");
        _standAsides = factory.CreateCounter("leader_sidecar_stand_asides_total", "Times this replica stepped down and released the lease because its app was unhealthy.", "name").WithLabels(_name);
        _endpointUpdates = factory.CreateCounter("leader_sidecar_endpoint_updates_total", "Attempts to update the leader's EndpointSlice (--leader-service), by result: success, conflict, forbidden, unauthorized, not_found, unavailable, error.", "name", "result");
        _events = factory.CreateCounter("leader_sidecar_events_total", "Kubernetes Events about this replica's leadership (--events), by result: sent, failed, dropped (the queue was full).", "name", "result");
        factory.CreateGauge("leader_sidecar_build_info", "Always 1; the version label is this build's.", "version").WithLabels(Configuration.CommandLine.Version).Set(1);

        foreach (var role in new[] { Role.Unknown, Role.Follower, Role.Leader })
        {
            _roleChanges.WithLabels(_name, RoleLabel(role));
        }

        _lastRole = state.Current.Role;
        state.Subscribe(OnStatus);
        _registry.AddBeforeCollectCallback(Refresh);
    }

    public void RequestCompleted(string verb, string purpose, LeaseStoreFailure? failure, TimeSpan duration)
    {
        var result = failure is { } reason ? ReasonLabel(reason) : "ok";
        _requests.WithLabels(_name, verb, result).Inc();
        if (purpose != "renew")
        {
            return;
        }

        if (verb == "update")
        {
            _renewDuration.Observe(duration.TotalSeconds);
        }

        if (failure is not null)
        {
            _renewFailures.WithLabels(_name, result).Inc();
        }
    }

    public void SlowPath() => _slowPath.Inc();

    public void TermExhausted() => _termExhausted.Inc();

    public void StoodAside() => _standAsides.Inc();

    /// <summary>One Kubernetes Event's fate (<c>--events</c>): sent, failed or dropped.</summary>
    public void EventRecorded(string result) => _events.WithLabels(_name, result).Inc();

    /// <summary>What the app's health check says now.</summary>
    public void AppHealthy(bool healthy) => _appHealthy.WithLabels(_name).Set(healthy ? 1 : 0);

    /// <summary>Counts a refused call; <paramref name="method"/> is one of the service's own method names.</summary>
    public void ControlRefused(string method) => _controlRefused.WithLabels(_name, method).Inc();

    /// <summary>Counts an end of the exec-mode command; <paramref name="reason"/> is exited, failed, stopped or killed.</summary>
    public void ExecExited(string reason) => _execExits.WithLabels(_name, reason).Inc();

    /// <summary>Whether the exec-mode command runs now.</summary>
    public void ExecRunning(bool running) => _execRunning.Set(running ? 1 : 0);

    /// <summary>Counts an attempt to update the leader's EndpointSlice; <paramref name="result"/> is success or the failure's label.</summary>
    public void EndpointUpdated(string result) => _endpointUpdates.WithLabels(_name, result).Inc();

    /// <summary>Writes every metric in the Prometheus text exposition format.</summary>
    public Task WriteAsync(Stream destination, CancellationToken cancellationToken) =>
        _registry.CollectAndExportAsTextAsync(destination, cancellationToken);

    /// <summary>The reason label: the failure's name in snake case (<c>server_error</c>).</summary>
    public static string ReasonLabel(LeaseStoreFailure reason) => reason switch
    {
        LeaseStoreFailure.Conflict => "conflict",
        LeaseStoreFailure.NotFound => "not_found",
        LeaseStoreFailure.Unauthorized => "unauthorized",
        LeaseStoreFailure.Forbidden => "forbidden",
        LeaseStoreFailure.Timeout => "timeout",
        LeaseStoreFailure.Throttled => "throttled",
        LeaseStoreFailure.ServerError => "server_error",
        LeaseStoreFailure.Unavailable => "unavailable",
        LeaseStoreFailure.Invalid => "invalid",
        _ => "other",
    };

    private static string RoleLabel(Role role) => role switch
    {
        Role.Leader => "leader",
        Role.Follower => "follower",
        _ => "unknown",
    };

    /// <summary>Called synchronously by <see cref="LeadershipState"/> with every status, in order.</summary>
    private void OnStatus(LeadershipStatus status)
    {
        lock (_gate)
        {
            if (status.Role != _lastRole)
            {
                _roleChanges.WithLabels(_name, RoleLabel(status.Role)).Inc();
                _lastRole = status.Role;
            }
        }
    }

    private void Refresh()
    {
        var status = _state.Current;
        lock (_gate)
        {
            _masterStatus.Set(status.IsLeader ? 1 : 0);
            foreach (var role in new[] { Role.Unknown, Role.Follower, Role.Leader })
            {
                _role.WithLabels(_name, RoleLabel(role)).Set(status.Role == role ? 1 : 0);
            }

            var remaining = status.ClaimDeadline is { } deadline ? _time.GetElapsedTime(_time.GetTimestamp(), deadline) : TimeSpan.Zero;
            _claimRemaining.Set(Math.Max(0, remaining.TotalSeconds));

            if (status.LastObservedAt is { } observed)
            {
                _observedAge.WithLabels(_name).Set(_time.GetElapsedTime(observed).TotalSeconds);
            }

            if (status.Term is { } term)
            {
                _term.WithLabels(_name).Set(term);
            }
            else
            {
                _term.RemoveLabelled(_name);
            }

            // The holder comes from the lease record: a label of any size would be repeated on every scrape.
            var holder = SurfaceText.Bound(status.Holder);
            if (holder != _lastHolder)
            {
                var identity = SurfaceText.Bound(status.Identity);
                if (_lastHolder is not null)
                {
                    _holderInfo.RemoveLabelled(_name, identity, _lastHolder);
                }

                _holderInfo.WithLabels(_name, identity, holder).Set(1);
                _lastHolder = holder;
            }

            _watchStreams.Set(_streams.CountOn(WatchSurface.Grpc));
            _httpWatchStreams.Set(_streams.CountOn(WatchSurface.Http));
        }
    }
}
