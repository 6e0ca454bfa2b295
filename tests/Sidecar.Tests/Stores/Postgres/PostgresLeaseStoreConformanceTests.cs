using LeaderSidecar.Election;
using LeaderSidecar.Stores.Postgres;

namespace LeaderSidecar.Tests.Stores.Postgres;

/// <summary>The store contract for PostgreSQL, on a real PostgreSQL 15 started for each test.</summary>
public sealed class PostgresLeaseStoreConformanceTests : RemoteLeaseStoreConformanceTests
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
        Task.FromResult<ILeaseStore>(Connect($"postgresql://postgres@127.0.0.1:{ServerProcess.FreePort()}/postgres"));

    // A hand edit no writer of ours could leave: a negative term.
    protected override async Task<ILeaseStore> ConnectToInvalidLeaseAsync()
    {
        await (await ConnectAsync()).CreateAsync(new LeaseRecord("a", 15, DateTimeOffset.UnixEpoch, DateTimeOffset.UnixEpoch, 0), Ct);
        await _server.PsqlAsync("UPDATE leader_sidecar_leases SET lease_transitions = -1");
        return await ConnectAsync();
    }

    // A role that may log in but holds no privilege on the table.
    protected override async Task<ILeaseStore> ConnectWithoutPermissionAsync()
    {
        await (await ConnectAsync()).GetAsync(Ct);
        await _server.PsqlAsync("CREATE ROLE other LOGIN PASSWORD 'otherpw'");
        return Connect(_server.Url("other"), "otherpw");
    }

    protected override async Task<ILeaseStore> ConnectWithRejectedCredentialsAsync()
    {
        await _server.PsqlAsync("CREATE ROLE app LOGIN PASSWORD 'apppw'");
        return Connect(_server.Url("app"), "not-the-password");
    }

    protected override Task<ILeaseStore> ConnectToStalledServerAsync(TimeSpan requestTimeout)
    {
        _server.Pause();
        return Task.FromResult<ILeaseStore>(Connect(_server.Url(), requestTimeout: requestTimeout));
    }

    private PostgresLeaseStore Connect(string url, string? password = null, TimeSpan? requestTimeout = null)
    {
        var store = PostgresLeaseStoreTests.Store(url, password, requestTimeout: requestTimeout);
        _stores.Add(store);
        return store;
    }
}
