using LeaderSidecar.Election;
using LeaderSidecar.Stores.Postgres;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>The store contract for PostgreSQL, on a real PostgreSQL 15 started for each test.</summary>
public sealed class PostgresLeaseStoreConformanceTests : LeaseStoreConformanceTests
{
    private readonly List<PostgresLeaseStore> _stores = [];
    private PostgresServer _server = null!;

    public override async Task InitializeAsync()
    {
        _server = await PostgresServer.StartAsync();
    }

    public override async Task DisposeAsync()
    {
        _server.Resume();
        foreach (var store in _stores)
        {
            await store.DisposeAsync();
        }

        await _server.DisposeAsync();
        await base.DisposeAsync();
    }

    protected override Task<ILeaseStore> ConnectAsync() => Task.FromResult<ILeaseStore>(Connect(_server.Url()));

    protected override Task DeleteLeaseAsync() => _server.PsqlAsync(PostgresLeaseStoreTests.DeleteRow);

    // An administrator's pg_terminate_backend: every connection breaks, nothing written is lost.
    protected override Task DropWatchesAsync() => _server.TerminateConnectionsAsync();

    protected override Task<ILeaseStore> ConnectHangingAsync()
    {
        _server.Pause();
        return ConnectAsync();
    }

    protected override Task<ILeaseStore> ConnectUnreachableAsync() =>
        Task.FromResult<ILeaseStore>(Connect($"postgresql://postgres@127.0.0.1:{Etcd.EtcdServer.FreePort()}/postgres"));

    private PostgresLeaseStore Connect(string url)
    {
        var store = PostgresLeaseStoreTests.Store(url);
        _stores.Add(store);
        return store;
    }
}
