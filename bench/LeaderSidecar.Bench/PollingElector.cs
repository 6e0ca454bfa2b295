using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace LeaderSidecar.Bench;

/// <summary>
/// The polling baseline: what client-go's <c>tools/leaderelection</c> with a <c>LeaseLock</c> and
/// <c>ReleaseOnCancel: true</c> does, written out request for request so that the same run can put
/// its numbers beside the sidecar's. It has no watch: a follower learns of a change only at its
/// next poll.
/// </summary>
/// <remarks>
/// Followed from client-go (v0.31 and later): a follower calls <c>tryAcquireOrRenew</c> under
/// <c>wait.JitterUntil(retryPeriod, jitterFactor 1.2)</c>, so every 2 to 4.4 s with the defaults;
/// <c>tryAcquireOrRenew</c> is (1) the leader's optimistic PUT of its last object (the fast path),
/// (2) GET, create on 404, (3) note the time the record last changed on the local clock, give up if
/// another holder's lease has not expired by that clock, (4) PUT with the read resourceVersion. The
/// leader renews under <c>wait.Until(retryPeriod)</c> around <c>PollImmediateUntil(retryPeriod)</c>
/// bounded by the renew deadline; <c>IsLeader</c> compares the observed holder with the identity.
/// Release writes holder "" and <c>leaseDurationSeconds: 1</c>. It runs inside the harness process.
/// </remarks>
internal sealed class PollingElector : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _leases;
    private readonly Uri _lease;
    private readonly string _namespace;
    private readonly string _name;
    private readonly Timing _timing;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _crash = new();
    private JsonNode? _object;
    private JsonNode? _observedSpec;
    private DateTime _observedTime = DateTime.MinValue;
    private Task _running = Task.CompletedTask;
    private static int _failedReleases;

    public PollingElector(HttpClient http, Uri baseAddress, string namespaceName, string lease, string identity, Timing timing)
    {
        _http = http;
        _namespace = namespaceName;
        _name = lease;
        Identity = identity;
        _timing = timing;
        _leases = new Uri(baseAddress, $"apis/coordination.k8s.io/v1/namespaces/{namespaceName}/leases");
        _lease = new Uri(baseAddress, $"apis/coordination.k8s.io/v1/namespaces/{namespaceName}/leases/{lease}");
    }

    public string Identity { get; }

    /// <summary>Releases that were not written (for example a 409 after a renew whose answer was cancelled).</summary>
    public static int FailedReleases => _failedReleases;

    public RoleTimeline Roles { get; } = new();

    /// <summary>Requests sent, by verb, as the elector itself counted them.</summary>
    public ConcurrentDictionary<string, long> Requests { get; } = new();

    public bool IsLeader => (string?)_observedSpec?["holderIdentity"] == Identity;

    public void Start()
    {
        Roles.Add("FOLLOWER");
        _running = Task.Run(() => RunAsync(_stop.Token));
    }

    /// <summary>Context cancelled with ReleaseOnCancel: the leader releases the lease, then the loop ends.</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await _running;
    }

    /// <summary>The process died: no release, every request in flight is abandoned.</summary>
    public async Task CrashAsync()
    {
        await _crash.CancelAsync();
        await _stop.CancelAsync();
        await _running;
    }

    public async ValueTask DisposeAsync()
    {
        await CrashAsync();
        _http.Dispose();
        _stop.Dispose();
        _crash.Dispose();
    }

    private async Task RunAsync(CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                // acquire: wait.JitterUntil(retryPeriod, 1.2, sliding)
                while (!await TryAcquireOrRenewAsync(stop))
                {
                    await Task.Delay(_timing.RetryPeriod * (1 + (Random.Shared.NextDouble() * 1.2)), stop);
                }

                Roles.Add("LEADER");

                // renew: wait.Until(retryPeriod) around PollImmediateUntil(retryPeriod) with the renew deadline
                while (true)
                {
                    using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
                    deadline.CancelAfter(_timing.RenewDeadline);
                    var renewed = false;
                    try
                    {
                        while (!(renewed = await TryAcquireOrRenewAsync(deadline.Token)))
                        {
                            await Task.Delay(_timing.RetryPeriod, deadline.Token);
                        }
                    }
                    catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                    {
                    }

                    if (!renewed)
                    {
                        Roles.Add("FOLLOWER");
                        break;
                    }

                    await Task.Delay(_timing.RetryPeriod, stop);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested || _crash.IsCancellationRequested)
        {
        }

        if (!_crash.IsCancellationRequested && IsLeader)
        {
            Roles.Add("FOLLOWER");
            await ReleaseAsync();
        }
    }

    private async Task<bool> TryAcquireOrRenewAsync(CancellationToken cancellationToken)
    {
        var now = DateTime.UtcNow;
        var record = new JsonObject
        {
            ["holderIdentity"] = Identity,
            ["leaseDurationSeconds"] = (int)_timing.LeaseDuration.TotalSeconds,
            ["acquireTime"] = MicroTime(now),
            ["renewTime"] = MicroTime(now),
        };

        // 1. The leader's fast path: update over the last object, no read.
        if (IsLeader && LeaseValid(now))
        {
            record["acquireTime"] = _observedSpec!["acquireTime"]?.DeepClone();
            record["leaseTransitions"] = _observedSpec["leaseTransitions"]?.DeepClone() ?? 0;
            if (await UpdateAsync(record, cancellationToken))
            {
                return true;
            }
        }

        // 2. Get, or create.
        using var request = new HttpRequestMessage(HttpMethod.Get, _lease);
        using var got = await SendAsync("get", request, cancellationToken);
        if (got.StatusCode == HttpStatusCode.NotFound)
        {
            record["leaseTransitions"] = 0;
            var lease = new JsonObject
            {
                ["apiVersion"] = "coordination.k8s.io/v1",
                ["kind"] = "Lease",
                ["metadata"] = new JsonObject { ["name"] = _name, ["namespace"] = _namespace },
                ["spec"] = record,
            };
            using var create = new HttpRequestMessage(HttpMethod.Post, _leases) { Content = Json(lease) };
            using var created = await SendAsync("create", create, cancellationToken);
            if (created.StatusCode != HttpStatusCode.Created)
            {
                return false;
            }

            await ObserveAsync(created, cancellationToken);
            return true;
        }

        if (!got.IsSuccessStatusCode)
        {
            return false;
        }

        // 3. Note when the record last changed, on the local clock; respect another holder's lease.
        await ObserveAsync(got, cancellationToken);
        var spec = _object!["spec"]!;
        var holder = (string?)spec["holderIdentity"];
        if (!string.IsNullOrEmpty(holder) && LeaseValid(DateTime.UtcNow) && !IsLeader)
        {
            return false;
        }

        // 4. Update with the resourceVersion just read.
        if (IsLeader)
        {
            record["acquireTime"] = spec["acquireTime"]?.DeepClone();
            record["leaseTransitions"] = spec["leaseTransitions"]?.DeepClone() ?? 0;
        }
        else
        {
            record["leaseTransitions"] = ((int?)spec["leaseTransitions"] ?? 0) + 1;
        }

        return await UpdateAsync(record, cancellationToken);
    }

    private async Task<bool> UpdateAsync(JsonObject spec, CancellationToken cancellationToken)
    {
        var lease = _object!.DeepClone();
        lease["spec"] = spec;
        using var request = new HttpRequestMessage(HttpMethod.Put, _lease) { Content = Json(lease) };
        using var response = await SendAsync("update", request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            if ((string?)spec["holderIdentity"] == "")
            {
                Harness.Log($"  polling reference {Identity}: release answered {(int)response.StatusCode}");
            }

            return false;
        }

        await ObserveAsync(response, cancellationToken);
        return true;
    }

    /// <summary>client-go's release: holder "", lease duration 1 s, transitions kept.</summary>
    private async Task ReleaseAsync()
    {
        var now = DateTime.UtcNow;
        var record = new JsonObject
        {
            ["holderIdentity"] = "",
            ["leaseDurationSeconds"] = 1,
            ["acquireTime"] = MicroTime(now),
            ["renewTime"] = MicroTime(now),
            ["leaseTransitions"] = _observedSpec?["leaseTransitions"]?.DeepClone() ?? 0,
        };
        using var timeout = new CancellationTokenSource(_timing.RenewDeadline);
        var released = false;
        try
        {
            released = await UpdateAsync(record, timeout.Token);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
        }

        if (!released)
        {
            // client-go only logs "Failed to release lock"; the followers then wait for expiry.
            Interlocked.Increment(ref _failedReleases);
        }
    }

    private async Task ObserveAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        _object = JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken))!;
        var spec = _object["spec"]!;
        if (_observedSpec is null || spec.ToJsonString() != _observedSpec.ToJsonString())
        {
            _observedSpec = spec.DeepClone();
            _observedTime = DateTime.UtcNow;
        }
    }

    private bool LeaseValid(DateTime now) =>
        _observedTime.AddSeconds((int?)_observedSpec?["leaseDurationSeconds"] ?? 0) > now;

    private async Task<HttpResponseMessage> SendAsync(string verb, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Requests.AddOrUpdate(verb, 1, (_, n) => n + 1);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _crash.Token);

        // client-go's request timeout is the renew deadline's share; half the deadline, as the sidecar.
        linked.CancelAfter(_timing.RenewDeadline / 2);
        try
        {
            return await _http.SendAsync(request, linked.Token);
        }
        catch (Exception e) when (e is HttpRequestException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested && !_crash.IsCancellationRequested))
        {
            return new HttpResponseMessage(HttpStatusCode.ServiceUnavailable);
        }
    }

    private static string MicroTime(DateTime time) => time.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    private static StringContent Json(JsonNode node) => new(node.ToJsonString(), Encoding.UTF8, "application/json");
}
