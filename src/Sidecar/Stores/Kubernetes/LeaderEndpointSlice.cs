using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;
using LeaderSidecar.Surfaces.Metrics;

namespace LeaderSidecar.Stores.Kubernetes;

/// <summary>
/// <c>--leader-service NAME</c>: keeps the EndpointSlice <c>NAME-leader</c> (created by the
/// manifests, behind a selector-less Service <c>NAME</c>) listing exactly the leader's pod IP, so the
/// Service reaches only the leader.
/// </summary>
/// <remarks>
/// <para>
/// An observer of the published status, like the other surfaces: <see cref="OnStatus"/> only records
/// what is wanted and wakes the writer's own loop, so a slow or refusing API server never delays a
/// renew or a release. Every write is a compare-and-swap: GET the slice, decide, PUT it back with the
/// <c>resourceVersion</c> read; a 409 means someone wrote in between, so the slice is read again and
/// the decision made again.
/// </para>
/// <para>
/// A new leader writes its address at once, whatever the slice listed (a crashed or cut-off leader's
/// address is replaced at takeover), and reads the slice again every <see cref="Resync"/> while it
/// leads, so a hand edit or a lost write is repaired. A replica that is not the leader removes its own
/// address only while the slice still lists it: a stale leader that steps down late finds its
/// successor's address there and leaves it. Failed requests are logged, counted and retried with a
/// capped, jittered backoff.
/// </para>
/// </remarks>
internal sealed partial class LeaderEndpointSlice : IHostedService, IDisposable
{
    /// <summary>How often the leader reads the slice again to repair a hand edit or a lost write.</summary>
    public static readonly TimeSpan Resync = TimeSpan.FromSeconds(30);

    /// <summary>The first retry's delay after a failed request; it doubles up to <see cref="MaxBackoff"/>.</summary>
    public static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest delay between retries.</summary>
    public static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    /// <summary>The variable the manifests fill from the downward API (<c>status.podIP</c>).</summary>
    public const string PodIpVariable = "POD_IP";

    // Conflicts are retried at once (read again, decide again) this many times in a row, then with backoff.
    private const int ImmediateConflictRetries = 3;

    private readonly ApiClient _api;
    private readonly string _uri;
    private readonly string _address;
    private readonly TimeSpan _requestTimeout;
    private readonly LeadershipState _state;
    private readonly Action<string> _counted;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private TaskCompletionSource _wake = NewSignal();
    private bool _dirty = true;
    private bool _finishing;
    private bool? _lead;
    private long? _term;
    private Task _loop = Task.CompletedTask;

    /// <param name="api">The Kubernetes store's connection.</param>
    /// <param name="namespace">The slice's namespace (the lease's).</param>
    /// <param name="service">The Service name; the slice is <c>NAME-leader</c>.</param>
    /// <param name="podIp">This replica's pod IP.</param>
    /// <param name="requestTimeout">The longest one request may take.</param>
    /// <param name="state">The published status this writer follows.</param>
    /// <param name="counted">Called with each write's result (success, conflict, forbidden...).</param>
    /// <param name="time">The clock of timeouts, backoff and resync.</param>
    /// <param name="logger">Where failures go.</param>
    public LeaderEndpointSlice(ApiClient api, string @namespace, string service, IPAddress podIp, TimeSpan requestTimeout, LeadershipState state, Action<string> counted, TimeProvider time, ILogger<LeaderEndpointSlice> logger)
    {
        _api = api;
        SliceName = SliceNameOf(service);
        _uri = $"{api.BaseUri.ToString().TrimEnd('/')}/apis/discovery.k8s.io/v1/namespaces/{@namespace}/endpointslices/{SliceName}";
        _address = podIp.ToString();
        _requestTimeout = requestTimeout;
        _state = state;
        _counted = counted;
        _time = time;
        _logger = logger;
    }

    /// <summary>The EndpointSlice written: <c>NAME-leader</c>.</summary>
    public string SliceName { get; }

    public static string SliceNameOf(string service) => $"{service}-leader";

    /// <summary>
    /// A Service name's problem, or <see langword="null"/>: Service names are RFC 1035 labels
    /// (lowercase letters, digits and '-', starting with a letter, at most 63).
    /// </summary>
    public static string? ServiceNameProblem(string value) =>
        value.Length > 0 && char.IsAsciiLetterLower(value[0]) && CommandLine.IsDnsLabel(value) ? null
        : $"leader service {CommandLine.Quote(value)} is not a valid Service name (lowercase letters, digits and '-', starting with a letter, at most 63)";

    /// <summary>This pod's IP from <c>$POD_IP</c>, or a <see cref="StartupException"/> naming the problem.</summary>
    public static IPAddress PodIp(Func<string, string?> environment)
    {
        var value = environment(PodIpVariable);
        if (string.IsNullOrEmpty(value))
        {
            throw new StartupException($"--leader-service needs this pod's IP in ${PodIpVariable} (the downward API's status.podIP)");
        }

        // IPAddress.TryParse also takes "1" (0.0.0.1) and "1.2.3": only the written-out forms count.
        if (!IPAddress.TryParse(value, out var ip)
            || ip.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
            || (ip.AddressFamily == AddressFamily.InterNetwork && value.Count(c => c == '.') != 3)
            || (ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.ScopeId != 0))
        {
            throw new StartupException($"${PodIpVariable} {CommandLine.Quote(value)} is not an IP address (--leader-service)");
        }

        return ip;
    }

    /// <summary>Adds the writer (started before the elector, stopped after the release).</summary>
    public static void Register(IServiceCollection services, ApiClient api, SidecarOptions options, string service, Func<string, string?> environment, TimeProvider time)
    {
        var ip = PodIp(environment);
        services.AddSingleton(provider => new LeaderEndpointSlice(
            api,
            options.Namespace,
            service,
            ip,
            options.Election.RequestTimeout,
            provider.GetRequiredService<LeadershipState>(),
            provider.GetRequiredService<SidecarMetrics>().EndpointUpdated,
            time,
            provider.GetRequiredService<ILogger<LeaderEndpointSlice>>()));
        services.AddHostedService(provider => provider.GetRequiredService<LeaderEndpointSlice>());
    }

    /// <summary>Subscribes (so the first claim is seen) and starts the writer's loop.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _state.Subscribe(OnStatus);
        _loop = Task.Run(() => RunAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Runs after the release (the host stops services in reverse order, and the release happens
    /// while stopping): lets the loop remove this replica's address once more, within the request
    /// timeout, then ends it.
    /// </summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _finishing = true;
            _wake.TrySetResult();
        }

        try
        {
            await _loop.WaitAsync(_requestTimeout * 2, _time, cancellationToken);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            LogGaveUp(_logger, SliceName);
        }
        finally
        {
            await _stopping.CancelAsync();
            await _loop.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    public void Dispose() => _stopping.Dispose();

    /// <summary>Called by <see cref="LeadershipState"/> with every status: records what is wanted; never blocks.</summary>
    private void OnStatus(LeadershipStatus status)
    {
        lock (_gate)
        {
            // Every renew publishes a new status; only a change of leadership (or a new term) is news here.
            if (_lead == status.IsLeader && (!status.IsLeader || _term == status.Term))
            {
                return;
            }

            _lead = status.IsLeader;
            _term = status.Term;
            _dirty = true;
            _wake.TrySetResult();
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        var conflicts = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            bool lead, finishing;
            lock (_gate)
            {
                (lead, finishing) = (_lead == true, _finishing);

                // A wake-up from before this pass is served by it; only a later change cuts the next wait short.
                if (_wake.Task.IsCompleted)
                {
                    _wake = NewSignal();
                }

                if (_dirty)
                {
                    _dirty = false;
                    conflicts = 0;
                }
            }

            var result = await ReconcileAsync(lead, cancellationToken);
            TimeSpan wait;
            if (result == Result.Done)
            {
                failures = 0;
                wait = lead ? Resync : Timeout.InfiniteTimeSpan;
            }
            else if (result == Result.Conflict && ++conflicts <= ImmediateConflictRetries)
            {
                wait = TimeSpan.Zero;
            }
            else if (result == Result.Changed)
            {
                wait = TimeSpan.Zero;
            }
            else
            {
                wait = Backoff(++failures);
                LogRetrying(_logger, SliceName, wait.TotalSeconds);
            }

            if (finishing && (result != Result.Conflict || conflicts > ImmediateConflictRetries))
            {
                return;
            }

            await WaitAsync(wait, cancellationToken);
        }
    }

    /// <summary>Waits <paramref name="wait"/>, or less when the wanted state changes or the host stops.</summary>
    private async Task WaitAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        Task woken;
        lock (_gate)
        {
            if (_dirty || _finishing)
            {
                _wake = NewSignal();
                return;
            }

            woken = _wake.Task;
        }

        if (wait != TimeSpan.Zero)
        {
            try
            {
                await woken.WaitAsync(wait, _time, cancellationToken);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
            }
        }

        lock (_gate)
        {
            if (_wake.Task.IsCompleted)
            {
                _wake = NewSignal();
            }
        }
    }

    /// <summary>
    /// One compare-and-swap step: read the slice, decide, write it back with the version read.
    /// <see cref="Result.Changed"/> when leadership changed in between (nothing written; decide again).
    /// </summary>
    private async Task<Result> ReconcileAsync(bool lead, CancellationToken cancellationToken)
    {
        try
        {
            // 1. Read the slice and its resourceVersion.
            var slice = await SendAsync(HttpMethod.Get, null, cancellationToken);
            var endpoints = slice["endpoints"] as JsonArray;

            // 2. Decide: the leader wants to be the only endpoint; anyone else wants its address gone.
            JsonArray wanted;
            if (lead)
            {
                if (IsOnlyThis(endpoints))
                {
                    return Result.Done;
                }

                // The constructor, not a collection expression: its Add<T> is not trim-safe.
                wanted = new JsonArray(new JsonObject
                {
                    ["addresses"] = new JsonArray(_address),
                    ["conditions"] = new JsonObject { ["ready"] = true, ["serving"] = true, ["terminating"] = false },
                });
            }
            else
            {
                if (endpoints is null || !endpoints.Any(Lists))
                {
                    if (endpoints is { Count: > 0 })
                    {
                        LogLeftToOthers(_logger, SliceName, _address);
                    }

                    return Result.Done;
                }

                wanted = new JsonArray([.. endpoints.Where(e => !Lists(e)).Select(e => e!.DeepClone())]);
            }

            // 3. Only if leadership is still what was decided on: a claim that ran out meanwhile must
            //    not write its address, and a replica that became leader must not remove it.
            if (_state.Current.IsLeader != lead)
            {
                return Result.Changed;
            }

            slice["endpoints"] = wanted;
            (slice["metadata"] as JsonObject)?.Remove("managedFields");

            // 4. Write it back; a 409 means another writer came first.
            await SendAsync(HttpMethod.Put, slice, cancellationToken);
            _counted("success");
            if (lead)
            {
                LogListed(_logger, SliceName, _address);
            }
            else
            {
                LogRemoved(_logger, SliceName, _address);
            }

            return Result.Done;
        }
        catch (LeaseStoreException e)
        {
            var result = ResultLabel(e.Reason);
            _counted(result);
            LogFailed(_logger, SliceName, result, e.Message);
            return e.Reason == LeaseStoreFailure.Conflict ? Result.Conflict : Result.Failed;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Result.Failed;
        }
    }

    /// <summary>Whether the slice lists this address as its one and only ready endpoint.</summary>
    private bool IsOnlyThis(JsonArray? endpoints) =>
        endpoints is { Count: 1 } && endpoints[0] is JsonObject only
        && only["addresses"] is JsonArray { Count: 1 } addresses && addresses[0] is JsonValue address && Same(address)
        && only["conditions"]?["ready"] is JsonValue ready && ready.GetValueKind() == JsonValueKind.True;

    private bool Lists(JsonNode? endpoint) =>
        endpoint?["addresses"] is JsonArray addresses && addresses.Any(a => a is JsonValue value && Same(value));

    private bool Same(JsonValue value) =>
        value.GetValueKind() == JsonValueKind.String
        && IPAddress.TryParse(value.GetValue<string>(), out var ip)
        && ip.ToString() == _address;

    /// <summary>One request within the request timeout; the answer is the slice as the server has it.</summary>
    private async Task<JsonObject> SendAsync(HttpMethod method, JsonObject? body, CancellationToken cancellationToken) =>
        await RequestTimeout.WithinAsync($"endpointslice {method.Method.ToLowerInvariant()}", _requestTimeout, _time, async timeout =>
        {
            using var request = new HttpRequestMessage(method, _uri);
            if (body is not null)
            {
                request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
            }

            try
            {
                await _api.AuthorizeAsync(request, timeout);
                using var response = await _api.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout);
                if (!response.IsSuccessStatusCode)
                {
                    if (response.StatusCode == HttpStatusCode.Unauthorized)
                    {
                        _api.CredentialsRejected();
                    }

                    throw KubernetesLeaseStore.FromStatus(response.StatusCode, await KubernetesLeaseStore.ReadErrorAsync(response.Content, timeout));
                }

                var bytes = await KubernetesLeaseStore.ReadBoundedAsync(response.Content, KubernetesLeaseStore.MaxObjectBytes, timeout)
                    ?? throw new LeaseStoreException(LeaseStoreFailure.Invalid, $"answer larger than the {KubernetesLeaseStore.MaxObjectBytes}-byte limit");
                return JsonNode.Parse(bytes.Span) as JsonObject
                    ?? throw new LeaseStoreException(LeaseStoreFailure.Invalid, "the answer is not a JSON object");
            }
            catch (Exception e) when (KubernetesLeaseStore.Failure(e, timeout) is { } failure)
            {
                throw failure;
            }
        }, cancellationToken);

    /// <summary>The delay before retry <paramref name="failures"/>: doubling from <see cref="FirstBackoff"/>, capped, with ±20 % jitter.</summary>
    internal static TimeSpan Backoff(int failures)
    {
        var doubled = FirstBackoff * Math.Pow(2, Math.Min(failures - 1, 16));
        var capped = doubled < MaxBackoff ? doubled : MaxBackoff;
        return capped * (0.8 + (0.4 * Random.Shared.NextDouble()));
    }

    /// <summary>The <c>result</c> label of <c>leader_sidecar_endpoint_updates_total</c> for a failure.</summary>
    internal static string ResultLabel(LeaseStoreFailure reason) => reason switch
    {
        LeaseStoreFailure.Conflict => "conflict",
        LeaseStoreFailure.Forbidden => "forbidden",
        LeaseStoreFailure.Unauthorized => "unauthorized",
        LeaseStoreFailure.NotFound => "not_found",
        LeaseStoreFailure.Unavailable or LeaseStoreFailure.Timeout or LeaseStoreFailure.ServerError or LeaseStoreFailure.Throttled => "unavailable",
        _ => "error",
    };

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private enum Result
    {
        Done,
        Changed,
        Conflict,
        Failed,
    }

    [LoggerMessage(EventId = 660, EventName = "LeaderEndpointListed", Level = LogLevel.Information,
        Message = "EndpointSlice {Slice} now lists this leader's address {Address} as its only endpoint")]
    private static partial void LogListed(ILogger logger, string slice, string address);

    [LoggerMessage(EventId = 661, EventName = "LeaderEndpointRemoved", Level = LogLevel.Information,
        Message = "Removed this replica's address {Address} from EndpointSlice {Slice}")]
    private static partial void LogRemoved(ILogger logger, string slice, string address);

    [LoggerMessage(EventId = 662, EventName = "LeaderEndpointFailed", Level = LogLevel.Warning,
        Message = "Could not update EndpointSlice {Slice} ({Result}): {Reason}")]
    private static partial void LogFailed(ILogger logger, string slice, string result, string reason);

    [LoggerMessage(EventId = 663, EventName = "LeaderEndpointRetrying", Level = LogLevel.Information,
        Message = "Trying EndpointSlice {Slice} again in {DelaySeconds:0.###} s")]
    private static partial void LogRetrying(ILogger logger, string slice, double delaySeconds);

    [LoggerMessage(EventId = 664, EventName = "LeaderEndpointLeftToOthers", Level = LogLevel.Debug,
        Message = "EndpointSlice {Slice} does not list this replica's address {Address}; left as it is")]
    private static partial void LogLeftToOthers(ILogger logger, string slice, string address);

    [LoggerMessage(EventId = 665, EventName = "LeaderEndpointGaveUp", Level = LogLevel.Warning,
        Message = "Stopping before EndpointSlice {Slice} could be updated; the next leader overwrites it")]
    private static partial void LogGaveUp(ILogger logger, string slice);
}
