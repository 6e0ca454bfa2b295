using LeaderSidecar.Election;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>The store contract for Redis, on a real redis-server started for each test.</summary>
public sealed class RedisLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private readonly List<RedisLeaseStore> _stores = [];
    private RedisServer _server = null!;

    public override async Task InitializeAsync() => _server = await RedisServer.StartAsync();

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

    protected override Task DeleteLeaseAsync() => _server.ExpectAsync("1", "DEL", RedisLeaseStoreTests.Key);

    // A kill and restart on the same append-only file: every connection breaks, nothing written is lost.
    protected override Task DropWatchesAsync() => _server.RestartAsync();

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        _server.Pause();
        return ConnectAsync();
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync() =>
        Task.FromResult<ILeaseStore>(Connect(_server.Endpoint with { Port = Etcd.EtcdServer.FreePort() }));

    private RedisLeaseStore Connect(RedisEndpoint endpoint)
    {
        var store = RedisLeaseStoreTests.Store(endpoint);
        _stores.Add(store);
        return store;
    }
}
