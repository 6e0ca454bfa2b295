using LeaderSidecar.Election;
using LeaderSidecar.Stores.Etcd;
using Microsoft.Extensions.Logging.Abstractions;

namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>The store contract for etcd, on a real single-member etcd started for each test.</summary>
public sealed class EtcdLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private readonly List<EtcdLeaseStore> _stores = [];
    private EtcdServer _server = null!;

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
        Task.FromResult<ILeaseStore>(Connect(new Uri($"http://127.0.0.1:{EtcdServer.FreePort()}")));

    private EtcdLeaseStore Connect(Uri endpoint)
    {
        var store = EtcdLeaseStoreTests.Store([endpoint]);
        _stores.Add(store);
        return store;
    }
}
