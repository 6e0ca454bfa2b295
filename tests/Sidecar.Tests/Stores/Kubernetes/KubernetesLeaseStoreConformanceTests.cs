using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The store contract for the Kubernetes Lease, on the Lease API test server over TLS.</summary>
public sealed class KubernetesLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private const string Namespace = "demo";
    private const string Name = "app";
    private readonly TempDirectory _dir = new();
    private readonly List<KubernetesLeaseStore> _stores = [];
    private LeaseApiServer _server = null!;

    public override async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync();
        _server.Tokens.Set("replica", new ApiUser("system:serviceaccount:demo:replica", LeaseRule.ForElection(Namespace, Name)));
    }

    public override async Task DisposeAsync()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        await _server.DisposeAsync();
        _dir.Dispose();
        await base.DisposeAsync();
    }

    protected override Task<ILeaseStore> ConnectAsync()
    {
        var kubeconfig = _dir.File($"kubeconfig-{Guid.NewGuid():N}");
        _server.WriteKubeconfig(kubeconfig, "replica", Namespace);
        var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, TimeSpan.FromSeconds(10), TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);
        _stores.Add(store);
        return Task.FromResult<ILeaseStore>(store);
    }

    protected override Task DeleteLeaseAsync()
    {
        _server.Store.Delete(Namespace, Name);
        return Task.CompletedTask;
    }

    protected override Task DropWatchesAsync()
    {
        _server.DropWatches(abortConnections: true);
        return Task.CompletedTask;
    }

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        _server.Faults.Hang();
        return ConnectAsync();
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync()
    {
        _server.Faults.RefuseConnections = true;
        return ConnectAsync();
    }
}
