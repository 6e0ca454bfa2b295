using System.Text;
using LeaderSidecar.Election;
using LeaderSidecar.Stores.Etcd;

namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>The store contract for etcd, on a real single-member etcd started for each test.</summary>
public sealed class EtcdLeaseStoreConformanceTests : RemoteLeaseStoreConformanceTests
{
    private readonly List<EtcdLeaseStore> _stores = [];
    private EtcdServer _server = null!;
    private EtcdServer? _withAuth;

    public override async Task InitializeAsync()
    {
        _server = await EtcdServer.StartAsync();
    }

    public override async Task DisposeAsync()
    {
        _server.Resume();
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        await _server.DisposeAsync();
        if (_withAuth is not null)
        {
            await _withAuth.DisposeAsync();
        }

        await base.DisposeAsync();
    }

    protected override Task<ILeaseStore> ConnectAsync() => Task.FromResult<ILeaseStore>(Connect(_server.Endpoint));

    protected override Task DeleteLeaseAsync() => _server.DeleteAsync(EtcdLeaseStoreTests.Key);

    // A kill and restart on the same data directory: every stream breaks, nothing written is lost.
    protected override Task DropWatchesAsync() => _server.RestartAsync();

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        _server.Pause();
        return ConnectAsync();
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync() =>
        Task.FromResult<ILeaseStore>(Connect(new Uri($"http://127.0.0.1:{ServerProcess.FreePort()}")));

    // Hand-written with etcdctl put, say.
    protected override async Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        await _server.PutAsync(EtcdLeaseStoreTests.Key, Encoding.UTF8.GetBytes("this is not a lease record"));
        return await ConnectAsync();
    }

    // A user that exists, with no role on the key.
    protected override async Task<ILeaseStore> ConnectWithoutPermissionAsync() =>
        Track(EtcdLeaseStoreTests.Store([(await WithAuthAsync()).Endpoint], "other", "otherpw"));

    protected override async Task<ILeaseStore> ConnectWithRejectedCredentialsAsync() =>
        Track(EtcdLeaseStoreTests.Store([(await WithAuthAsync()).Endpoint], "app", "not-the-password"));

    protected override Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout)
    {
        _server.Pause();
        return Task.FromResult<ILeaseStore>(Track(EtcdLeaseStoreTests.Store([_server.Endpoint], requestTimeout: requestTimeout)));
    }

    /// <summary>A second etcd with auth on: a user "app" with a role on the prefix, and a user "other" with none.</summary>
    private async Task<EtcdServer> WithAuthAsync()
    {
        if (_withAuth is null)
        {
            _withAuth = await EtcdServer.StartAsync();
            await EtcdLeaseStoreTests.AddElectionUserAsync(_withAuth, "app", "apppw");
            await _withAuth.EtcdctlAsync("user", "add", "other:otherpw");
            await _withAuth.EnableAuthAsync();
        }

        return _withAuth;
    }

    private EtcdLeaseStore Connect(Uri endpoint) => Track(EtcdLeaseStoreTests.Store([endpoint]));

    private EtcdLeaseStore Track(EtcdLeaseStore store)
    {
        _stores.Add(store);
        return store;
    }
}
