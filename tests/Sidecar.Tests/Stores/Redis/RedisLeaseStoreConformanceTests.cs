using LeaderSidecar.Election;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Tests.Stores.Redis;

/// <summary>The store contract for Redis, on a real redis-server started for each test.</summary>
public sealed class RedisLeaseStoreConformanceTests : RemoteLeaseStoreConformanceTests
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
        Task.FromResult<ILeaseStore>(Connect(_server.Endpoint with { Port = ServerProcess.FreePort() }));

    // A hand edit no writer of ours could leave: a string where the hash should be (WRONGTYPE).
    protected override async Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        await _server.ExpectAsync("OK", "SET", RedisLeaseStoreTests.Key, "this is not a lease record");
        return await ConnectAsync();
    }

    // A user whose ACL covers every command but only other keys and channels.
    protected override async Task<ILeaseStore> ConnectWithoutPermissionAsync()
    {
        await _server.AddUserAsync("other", "otherpw", "~elsewhere:*", "&elsewhere:*", "+@all");
        return Connect(_server.Endpoint with { User = "other" }, "otherpw");
    }

    protected override async Task<ILeaseStore> ConnectWithRejectedCredentialsAsync()
    {
        await _server.AddUserAsync("app", "apppw", "~*", "&*", "+@all");
        return Connect(_server.Endpoint with { User = "app" }, "not-the-password");
    }

    protected override Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout)
    {
        _server.Pause();
        return Task.FromResult<ILeaseStore>(Connect(_server.Endpoint, requestTimeout: requestTimeout));
    }

    // A hand DEL publishes nothing: the watch sees it when no record came for its sync interval, here half a second.
    private RedisLeaseStore Connect(RedisEndpoint endpoint, string? password = null, TimeSpan? requestTimeout = null)
    {
        var store = RedisLeaseStoreTests.Store(endpoint, password, requestTimeout: requestTimeout, syncInterval: TimeSpan.FromMilliseconds(500));
        _stores.Add(store);
        return store;
    }
}
