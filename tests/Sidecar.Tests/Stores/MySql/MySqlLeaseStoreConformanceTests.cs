using LeaderSidecar.Election;
using LeaderSidecar.Stores.MySql;
using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.Stores.MySql;

/// <summary>The store contract for MySQL, on a real MariaDB started for each test.</summary>
public sealed class MySqlLeaseStoreConformanceTests : RemoteLeaseStoreConformanceTests
{
    private readonly List<MySqlLeaseStore> _stores = [];
    private MariaDbServer _server = null!;

    public override async Task InitializeAsync()
    {
        _server = await MariaDbServer.StartAsync();
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

    protected override Task<ILeaseStore> ConnectAsync() => Task.FromResult<ILeaseStore>(Connect(_server.ConnectionString()));

    protected override Task DeleteLeaseAsync() => _server.SqlAsync($"DELETE FROM {MySqlOptions.DefaultTable}");

    // A kill and restart on the same data directory: every connection breaks, nothing committed is lost.
    protected override Task DropWatchesAsync() => _server.RestartAsync();

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        _server.Pause();
        return ConnectAsync();
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync() =>
        Task.FromResult<ILeaseStore>(Connect(MariaDbServer.ConnectionStringAt(ServerProcess.FreePort())));

    // A hand edit no writer of ours could leave: an empty uid.
    protected override async Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        await (await ConnectAsync()).CreateAsync(new LeaseRecord("a", 15, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, 0), Ct);
        await _server.SqlAsync($"UPDATE {MySqlOptions.DefaultTable} SET uid = ''");
        return await ConnectAsync();
    }

    // A user that may log in but holds no privilege on the table.
    protected override async Task<ILeaseStore> ConnectWithoutPermissionAsync()
    {
        await (await ConnectAsync()).GetAsync(Ct);
        await _server.SqlAsync("CREATE USER 'nobody'@'%' IDENTIFIED BY 'nobody-pw'");
        return Connect(_server.ConnectionString("nobody", "nobody-pw"));
    }

    protected override Task<ILeaseStore> ConnectWithRejectedCredentialsAsync() =>
        Task.FromResult<ILeaseStore>(Connect(_server.ConnectionString(password: "not-the-password")));

    protected override Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout)
    {
        _server.Pause();
        return Task.FromResult<ILeaseStore>(Connect(_server.ConnectionString(), requestTimeout));
    }

    private MySqlLeaseStore Connect(string connectionString, TimeSpan? requestTimeout = null)
    {
        var store = MySqlLeaseStoreTests.Store(connectionString, requestTimeout: requestTimeout);
        _stores.Add(store);
        return store;
    }
}
