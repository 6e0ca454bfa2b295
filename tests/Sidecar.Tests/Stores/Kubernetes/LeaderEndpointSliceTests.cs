using System.Collections.Concurrent;
using System.Net;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using LeaderSidecar.Testing.LeaseApi.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The EndpointSlice writer of <c>--leader-service</c> against the Lease API test server, on a fake clock.</summary>
public sealed class LeaderEndpointSliceTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private const string Service = "web";
    private const string Slice = "web-leader";
    private const string Me = "10.0.0.11";
    private const string Successor = "10.0.0.12";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _dir = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 25, 2, 4, 12, TimeSpan.Zero));
    private readonly ConcurrentQueue<string> _results = [];
    private readonly ListLogger<LeaderEndpointSlice> _log = new();
    private LeaseApiServer _server = null!;
    private LeadershipState _state = null!;
    private LeaderEndpointSlice? _writer;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("token-a", new ApiUser("system:serviceaccount:demo:a", SliceRules));
        _server.Tokens.Set("token-lease-only", new ApiUser("system:serviceaccount:demo:b", LeaseRule.ForElection(Namespace, "app")));
        _server.EndpointSlices.CreateForService(Namespace, Slice, Service);
        _state = new LeadershipState(new ElectionOptions { Identity = "me", LeaseName = "app", LeaseNamespace = Namespace }, _time, NullLogger<LeadershipState>.Instance);
    }

    private static LeaseRule[] SliceRules => [new([LeaseRule.Get, LeaseRule.Update], [Slice], Namespace, "endpointslices")];

    [Fact]
    public async Task The_leader_becomes_the_only_endpoint_and_the_slice_keeps_its_ports_and_labels()
    {
        _server.EndpointSlices.SetAddresses(Namespace, Slice, "10.0.0.99", "10.0.0.98");
        await StartAsync();

        Publish(Role.Follower);
        Publish(Role.Leader);

        await UntilAddressesAsync([Me], "the leader's address alone");
        var slice = _server.EndpointSlices.Get(Namespace, Slice)!;
        Assert.Equal("IPv4", (string?)slice["addressType"]);
        Assert.Equal(8080, (int)slice["ports"]![0]!["port"]!);
        Assert.Equal(Service, (string?)slice["metadata"]!["labels"]!["kubernetes.io/service-name"]);
        Assert.True((bool)slice["endpoints"]![0]!["conditions"]!["ready"]!);
        Assert.Equal(["success"], _results);
    }

    [Fact]
    public async Task Stepping_down_removes_the_own_address()
    {
        await StartAsync();
        Publish(Role.Leader);
        await UntilAddressesAsync([Me], "the leader's address");

        Publish(Role.Follower);

        await UntilAddressesAsync([], "no address");
        Assert.Equal(["success", "success"], _results);
        Assert.Contains(_log.Entries, e => e.Event.Id == 661);
    }

    [Fact]
    public async Task A_follower_leaves_a_slice_that_lists_another_replica_alone()
    {
        _server.EndpointSlices.SetAddresses(Namespace, Slice, Successor);
        await StartAsync();

        Publish(Role.Follower);
        await Poll.UntilAsync(() => Task.FromResult(_log.Entries.Any(e => e.Event.Id == 664)), Deadline, "the follower's read");
        await StopAsync();

        Assert.Equal([Successor], _server.EndpointSlices.Addresses(Namespace, Slice));
        Assert.Empty(_results);
    }

    [Fact]
    public async Task A_stale_leader_that_steps_down_late_cannot_remove_its_successors_address()
    {
        await StartAsync();
        Publish(Role.Leader);
        await UntilAddressesAsync([Me], "the leader's address");

        // The step-down's write is held after its read; meanwhile the successor takes the slice.
        using (_server.Faults.Hang(new RequestFilter(ApiVerb.Update, "token-a")))
        {
            Publish(Role.Follower);
            await Poll.UntilAsync(() => Task.FromResult(_server.Faults.HungRequests == 1), Deadline, "the removal in flight");
            _server.EndpointSlices.SetAddresses(Namespace, Slice, Successor);
        }

        await Poll.UntilAsync(() => Task.FromResult(_results.Contains("conflict")), Deadline, "the stale write refused");
        await StopAsync();

        Assert.Equal([Successor], _server.EndpointSlices.Addresses(Namespace, Slice));
        Assert.Equal(["success", "conflict"], _results);
    }

    [Fact]
    public async Task A_conflict_is_read_again_and_decided_again_without_waiting()
    {
        await StartAsync();
        _server.Faults.FailNext(1, FaultResponse.FromStatus(new(409, "Conflict", "Operation cannot be fulfilled")), new RequestFilter(ApiVerb.Update));

        Publish(Role.Leader);

        // No fake time passes: the retry after a 409 does not back off.
        await UntilAddressesAsync([Me], "the leader's address after the conflict");
        Assert.Equal(["conflict", "success"], _results);
    }

    [Fact]
    public async Task A_forbidden_write_is_logged_counted_and_retried_with_backoff()
    {
        Publish(Role.Leader);
        await StartAsync("token-lease-only");

        await Poll.UntilAsync(() => Task.FromResult(_results.Count == 1), Deadline, "the first attempt");
        Assert.Equal("forbidden", _results.Single());
        Assert.Contains(_log.Entries, e => e.Event.Id == 662 && e.Level == LogLevel.Warning && e.Message.Contains("cannot get resource \"endpointslices\"", StringComparison.Ordinal));

        _server.Tokens.Set("token-lease-only", new ApiUser("system:serviceaccount:demo:b", SliceRules));
        Assert.Empty(_server.EndpointSlices.Addresses(Namespace, Slice));
        await UntilAddressesAsync([Me], "the address once allowed", step: TimeSpan.FromSeconds(1));
        Assert.Equal("success", _results.Last());
        Assert.All(_results.SkipLast(1), r => Assert.Equal("forbidden", r));
    }

    [Fact]
    public async Task An_unreachable_api_is_retried_with_growing_capped_delays_and_the_write_lands_after_it_heals()
    {
        Publish(Role.Leader);
        using (_server.Faults.FailAll(FaultResponse.ServiceUnavailable()))
        {
            await StartAsync();
            await Poll.UntilAsync(
                () =>
                {
                    _time.Advance(TimeSpan.FromSeconds(1));
                    return Task.FromResult(_results.Count >= 5);
                },
                Deadline,
                "five attempts");

            Assert.All(_results, r => Assert.Equal("unavailable", r));
        }

        // The delays logged double from the first (±20 % jitter).
        var delays = _log.Entries.Where(e => e.Event.Id == 663).Select(e => double.Parse(e.Message.Split(" in ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).Take(4).ToList();
        Assert.Equal(4, delays.Count);
        for (var i = 0; i < delays.Count; i++)
        {
            Assert.InRange(delays[i], 0.5 * Math.Pow(2, i) * 0.8, 0.5 * Math.Pow(2, i) * 1.2);
        }

        await UntilAddressesAsync([Me], "the address after the outage", step: TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task The_leader_repairs_a_hand_edit_at_the_next_resync()
    {
        await StartAsync();
        Publish(Role.Leader);
        await UntilAddressesAsync([Me], "the leader's address");

        // No fake time passed since the write, so the resync is due a full period from now.
        var edited = _time.GetUtcNow();
        _server.EndpointSlices.SetAddresses(Namespace, Slice, "10.0.0.99");

        await UntilAddressesAsync([Me], "the address repaired", step: TimeSpan.FromSeconds(1));
        Assert.InRange(_time.GetUtcNow() - edited, LeaderEndpointSlice.Resync, LeaderEndpointSlice.Resync + TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task Publishing_never_waits_for_a_hung_api_server()
    {
        await StartAsync();
        using (_server.Faults.Hang())
        {
            var publishing = Task.Run(() =>
            {
                for (var i = 0; i < 10; i++)
                {
                    Publish(i % 2 == 0 ? Role.Leader : Role.Follower);
                }
            });

            await publishing.WaitAsync(Deadline);
        }
    }

    [Fact]
    public async Task Stopping_after_the_release_waits_for_the_removal_under_way()
    {
        await StartAsync();
        Publish(Role.Leader);
        await UntilAddressesAsync([Me], "the leader's address");

        // Shutdown: the release (a follower now), then the host stops the writer, while the API
        // holds every slice request unanswered.
        var hang = _server.Faults.Hang(new RequestFilter(LeaseName: Slice));
        Publish(Role.Follower);
        var writer = _writer!;
        _writer = null;
        var stopping = writer.StopAsync(CancellationToken.None);
        await Poll.UntilAsync(() => Task.FromResult(_server.Faults.HungRequests > 0), Deadline, "the removal to reach the API");

        // The API answers again: the removal lands before the writer has stopped.
        hang.Dispose();
        await stopping.WaitAsync(Deadline);
        writer.Dispose();
        Assert.Empty(_server.EndpointSlices.Addresses(Namespace, Slice));
    }

    [Fact]
    public void Backoff_doubles_is_capped_and_jittered()
    {
        var first = Enumerable.Range(0, 50).Select(_ => LeaderEndpointSlice.Backoff(1)).ToList();
        var late = Enumerable.Range(0, 50).Select(_ => LeaderEndpointSlice.Backoff(1000)).ToList();

        Assert.All(first, d => Assert.InRange(d, LeaderEndpointSlice.FirstBackoff * 0.8, LeaderEndpointSlice.FirstBackoff * 1.2));
        Assert.All(late, d => Assert.InRange(d, LeaderEndpointSlice.MaxBackoff * 0.8, LeaderEndpointSlice.MaxBackoff * 1.2));
        Assert.True(first.Distinct().Count() > 1, "no jitter");
        Assert.InRange(LeaderEndpointSlice.Backoff(3), LeaderEndpointSlice.FirstBackoff * 4 * 0.8, LeaderEndpointSlice.FirstBackoff * 4 * 1.2);
    }

    [Theory]
    [InlineData(null, "needs this pod's IP in $POD_IP")]
    [InlineData("", "needs this pod's IP in $POD_IP")]
    [InlineData("1", "is not an IP address")]
    [InlineData("10.0.1", "is not an IP address")]
    [InlineData("pod-a", "is not an IP address")]
    [InlineData("fe80::1%eth0", "is not an IP address")]
    public void A_missing_or_malformed_pod_ip_is_a_start_up_error(string? value, string expected)
    {
        var e = Assert.Throws<StartupException>(() => LeaderEndpointSlice.PodIp(name => name == "POD_IP" ? value : null));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("10.1.2.3")]
    [InlineData("fd00::a")]
    public void A_pod_ip_of_either_family_is_taken(string value) =>
        Assert.Equal(IPAddress.Parse(value), LeaderEndpointSlice.PodIp(name => name == "POD_IP" ? value : null));

    [Theory]
    [InlineData("web", true)]
    [InlineData("my-app-2", true)]
    [InlineData("Web", false)]
    [InlineData("2web", false)]
    [InlineData("web-", false)]
    [InlineData("a.b", false)]
    [InlineData("", false)]
    public void The_service_name_must_be_a_service_name(string value, bool valid) =>
        Assert.Equal(valid, LeaderEndpointSlice.ServiceNameProblem(value) is null);

    [Fact]
    public void A_64_character_service_name_is_refused() =>
        Assert.NotNull(LeaderEndpointSlice.ServiceNameProblem(new string('a', 64)));

    private void Publish(Role role) => _state.Publish(new LeadershipStatus
    {
        Identity = "me",
        Role = role,
        Holder = role == Role.Leader ? "me" : "other",
        Term = 1,
        LeaseName = "app",
        LeaseNamespace = Namespace,
        ClaimDeadline = role == Role.Leader ? _time.GetTimestamp() + (_time.TimestampFrequency * 3600) : null,
    });

    private async Task StartAsync(string token = "token-a")
    {
        var kubeconfig = _dir.File($"{token}.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        _writer = new LeaderEndpointSlice(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Service, IPAddress.Parse(Me), TimeSpan.FromSeconds(5), _state, _results.Enqueue, _time, _log);
        await _writer.StartAsync(CancellationToken.None);
    }

    private async Task StopAsync()
    {
        if (_writer is { } writer)
        {
            _writer = null;
            await writer.StopAsync(CancellationToken.None);
            writer.Dispose();
        }
    }

    /// <summary>Waits for the slice to list <paramref name="expected"/>, moving the fake clock by <paramref name="step"/> at each look.</summary>
    private Task UntilAddressesAsync(string[] expected, string what, TimeSpan step = default) =>
        Poll.UntilAsync(
            () =>
            {
                var done = _server.EndpointSlices.Addresses(Namespace, Slice).SequenceEqual(expected);
                if (!done && step > TimeSpan.Zero)
                {
                    _time.Advance(step);
                }

                return Task.FromResult(done);
            },
            Deadline,
            what);

    public async Task DisposeAsync()
    {
        await StopAsync();
        _state.Dispose();
        await _server.DisposeAsync();
        _dir.Dispose();
    }
}
