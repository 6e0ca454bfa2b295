using LeaderSidecar.Election;
using LeaderSidecar.Stores.MySql;
using LeaderSidecar.Tests.Stores.Etcd;

namespace LeaderSidecar.Tests.Stores.MySql;

/// <summary>The store contract for MySQL, on a real MariaDB started for each test.</summary>
public sealed class MySqlLeaseStoreConformanceTests : LeaseStoreConformanceTests
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
        Task.FromResult<ILeaseStore>(Connect(MariaDbServer.ConnectionStringAt(EtcdServer.FreePort())));

    private MySqlLeaseStore Connect(string connectionString)
    {
        var store = MySqlLeaseStoreTests.Store(connectionString);
        _stores.Add(store);
        return store;
    }
}
