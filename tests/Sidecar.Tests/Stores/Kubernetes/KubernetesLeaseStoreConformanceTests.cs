using LeaderSidecar.Election;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Kubernetes;

/// <summary>The store contract for the Kubernetes Lease, on the Lease API test server over TLS.</summary>
public sealed class KubernetesLeaseStoreConformanceTests : RemoteLeaseStoreConformanceTests
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

    protected override Task<ILeaseStore> ConnectAsync() => Task.FromResult(Connect("replica"));

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

    // The API server validates every Lease, so only an answer garbled on the way (a broken proxy)
    // can be something other than a Lease.
    protected override Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        _server.Faults.FailAll(FaultResponse.PlainText(200, "this is not a lease"), new RequestFilter(ApiVerb.Get));
        return ConnectAsync();
    }

    // A service account with a token, and no RBAC rule for leases: 403.
    protected override Task<ILeaseStore> ConnectWithoutPermissionAsync()
    {
        _server.Tokens.Set("nobody", new ApiUser("system:serviceaccount:demo:nobody", []));
        return Task.FromResult(Connect("nobody"));
    }

    // A token the API server does not know (revoked, or from another cluster): 401.
    protected override Task<ILeaseStore> ConnectWithRejectedCredentialsAsync() => Task.FromResult(Connect("unknown-token"));

    protected override Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout)
    {
        _server.Faults.Hang();
        return Task.FromResult(Connect("replica", requestTimeout));
    }

    private ILeaseStore Connect(string token, TimeSpan? requestTimeout = null)
    {
        var kubeconfig = _dir.File($"kubeconfig-{Guid.NewGuid():N}");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        var store = new KubernetesLeaseStore(KubernetesConnection.FromKubeconfig(kubeconfig), Namespace, Name, requestTimeout ?? TimeSpan.FromSeconds(10), TimeProvider.System, NullLogger<KubernetesLeaseStore>.Instance);
        _stores.Add(store);
        return store;
    }
}
