using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The in-cluster connection: service-account token, CA and environment, over TLS.</summary>
public sealed class KubernetesConnectionTests : IAsyncLifetime
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);
    private readonly TempDirectory _serviceAccount = new();
    private readonly CancellationToken _ct = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;
    private readonly FakeTimeProvider _time = new();
    private LeaseApiServer _server = null!;
    private ProjectedVolume _volume = null!;

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        _server.Tokens.Set("first", new ApiUser("system:serviceaccount:demo:a", LeaseRule.ForElection("demo", "app")));
        _volume = new ProjectedVolume(_serviceAccount.Path);
        WriteToken("first\n");
    }

    /// <summary>What the kubelet does when it rotates the token: a new generation of the whole volume.</summary>
    private void WriteToken(string token) => _volume.Write(new Dictionary<string, string>
    {
        ["token"] = token,
        ["ca.crt"] = _server.CaCertificatePem!,
        ["namespace"] = "demo",
    });

    private KubernetesLeaseStore InClusterStore(string serviceAccount) =>
        new(KubernetesConnection.InCluster(Environment, _time, serviceAccount), "demo", "app", RequestTimeout, TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);

    private string? Environment(string name) => name switch
    {
        "KUBERNETES_SERVICE_HOST" => _server.BaseAddress.Host,
        "KUBERNETES_SERVICE_PORT" => _server.BaseAddress.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        _ => null,
    };

    [Fact]
    public async Task The_pods_service_account_reaches_the_api_over_tls()
    {
        Assert.True(KubernetesConnection.IsInCluster(Environment));
        using var store = InClusterStore(_serviceAccount.Path);

        Assert.Null(await store.GetAsync(_ct));
        Assert.Equal(1, _server.Requests[ApiVerb.Get, "first"]);
    }

    [Fact]
    public async Task A_token_the_kubelet_rotates_by_swapping_the_data_link_is_used_after_the_refresh_period()
    {
        using var store = InClusterStore(_serviceAccount.Path);
        Assert.Null(await store.GetAsync(_ct));

        // The kubelet writes a new generation and swaps ..data; the API server stops accepting the
        // old token. The visible token link itself never changes.
        _server.Tokens.Rotate("first", "second");
        WriteToken("second\n");
        _time.Advance(RotatingTokenFile.RefreshPeriod);

        Assert.Null(await store.GetAsync(_ct));
        Assert.Equal(1, _server.Requests[ApiVerb.Get, "first"]);
        Assert.Equal(1, _server.Requests[ApiVerb.Get, "second"]);
    }

    [Fact]
    public async Task After_a_401_the_next_request_reads_the_rotated_token_at_once()
    {
        using var store = InClusterStore(_serviceAccount.Path);
        Assert.Null(await store.GetAsync(_ct));
        _server.Tokens.Rotate("first", "second");
        WriteToken("second\n");

        // Within the refresh period the cached token goes out once more, and is refused.
        var refused = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Unauthorized, refused.Reason);
        Assert.Null(await store.GetAsync(_ct));
        Assert.Equal(1, _server.Requests[ApiVerb.Get, "second"]);
    }

    [Fact]
    public async Task After_a_401_the_next_watch_reads_the_rotated_token_at_once()
    {
        using var store = InClusterStore(_serviceAccount.Path);
        Assert.Null(await store.GetAsync(_ct));
        _server.Tokens.Rotate("first", "second");
        WriteToken("second\n");

        await using (var refused = store.WatchAsync(_ct).GetAsyncEnumerator(_ct))
        {
            var e = await Assert.ThrowsAsync<LeaseStoreException>(async () => await refused.MoveNextAsync());
            Assert.Equal(LeaseStoreFailure.Unauthorized, e.Reason);
        }

        await using var watch = store.WatchAsync(_ct).GetAsyncEnumerator(_ct);
        Assert.True(await watch.MoveNextAsync());
        Assert.Equal(1, _server.Requests[ApiVerb.Watch, "second"]);
    }

    [Fact]
    public async Task A_server_certificate_from_another_authority_is_refused()
    {
        using var other = new TempDirectory();
        await using var stranger = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
        await File.WriteAllTextAsync(other.File("token"), "first", _ct);
        await File.WriteAllTextAsync(other.File("ca.crt"), stranger.CaCertificatePem, _ct);
        using var store = InClusterStore(other.Path);

        var e = await Assert.ThrowsAsync<LeaseStoreException>(() => store.GetAsync(_ct));

        Assert.Equal(LeaseStoreFailure.Unavailable, e.Reason);
        Assert.Equal(0, _server.Requests.Total);
    }

    [Theory]
    [InlineData("token", "service-account token")]
    [InlineData("ca.crt", "service-account CA")]
    public void Missing_service_account_files_are_named(string missing, string expected)
    {
        File.Delete(_serviceAccount.File(missing));

        var e = Assert.Throws<ArgumentException>(() => KubernetesConnection.InCluster(Environment, _time, _serviceAccount.Path));

        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Outside_a_pod_there_is_no_in_cluster_configuration()
    {
        Assert.False(KubernetesConnection.IsInCluster(_ => null));
        var e = Assert.Throws<ArgumentException>(() => KubernetesConnection.InCluster(_ => null, _time, _serviceAccount.Path));
        Assert.Contains("KUBERNETES_SERVICE_HOST", e.Message, StringComparison.Ordinal);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _serviceAccount.Dispose();
    }
}
