using System.Diagnostics;
using static LeaderSidecar.Tests.EndToEnd.Timing;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// What the end-to-end tests of the SQL backends (mysql, postgres) share: a real server started
/// for each test, daemons on one row of its lease table, and the tests whose steps and checks are
/// the same on both. Each backend's class says how to reach and break its server and keeps the
/// tests only it has.
/// </summary>
public abstract class SqlBackendTests : IAsyncLifetime
{
    protected const string Table = "leader_sidecar_leases";
    protected const string Where = "WHERE namespace = 'demo' AND name = 'app'";
    private readonly List<DaemonProcess> _daemons = [];

    /// <summary>The server as its users call it, for messages ("MariaDB").</summary>
    protected abstract string ServerName { get; }

    /// <summary>The flag that selects the backend and takes <see cref="Url"/> ("--mysql").</summary>
    protected abstract string Flag { get; }

    /// <summary>The columns of the lease table that name the holder, its lease duration and the term.</summary>
    protected abstract string HolderColumn { get; }

    protected abstract string DurationColumn { get; }

    protected abstract string TransitionsColumn { get; }

    /// <summary>The environment every daemon is started with (a password the URL must not carry).</summary>
    protected virtual IReadOnlyDictionary<string, string> DaemonEnvironment { get; } = new Dictionary<string, string>();

    /// <summary>The server's URL for <paramref name="user"/>; null: the test user, allowed everything.</summary>
    protected abstract string Url(string? user = null);

    /// <summary>Runs SQL with the server's own CLI, as an operator would by hand; returns the trimmed output.</summary>
    protected abstract Task<string> SqlAsync(string sql);

    /// <summary>SIGKILL: every connection breaks at once.</summary>
    protected abstract Task StopServerAsync();

    /// <summary>A new server on the same port and data, once it answers.</summary>
    protected abstract Task RestartServerAsync();

    /// <summary>SIGSTOP: the server stops answering; its sockets stay open.</summary>
    protected abstract void PauseServer();

    protected abstract void ResumeServer();

    protected abstract ValueTask DisposeServerAsync();

    public abstract Task InitializeAsync();

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        await DisposeServerAsync();
    }

    [Fact]
    public async Task A_killed_leader_is_replaced_once_its_lease_runs_out()
    {
        var all = new[] { await StartAsync("a"), await StartAsync("b") };
        var leader = await DaemonProcess.SingleLeaderAsync(all);

        await leader.KillAsync();

        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());
        Assert.Equal(await IdentityAsync(next), await ColumnAsync(HolderColumn));
        Assert.Equal("1", await ColumnAsync(TransitionsColumn));
    }

    [Fact]
    public async Task A_server_that_is_down_at_start_up_is_waited_for()
    {
        await StopServerAsync();
        var daemon = await StartAsync("a");
        await Poll.UntilAsync(() => Task.FromResult(daemon.Output.Contains("First read of the lease failed", StringComparison.Ordinal)), Deadline, "the failed first read to be logged");
        Assert.False(daemon.HasExited);

        await RestartServerAsync();

        await Poll.UntilAsync(async () => await daemon.RoleAsync() == "LEADER", Deadline, $"the daemon to lead once {ServerName} is back");
    }

    [Fact]
    public async Task A_server_paused_past_the_lease_duration_makes_the_leader_step_down_by_its_renew_deadline()
    {
        await using var group = Group();
        var all = await StartAllAsync(group, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        PauseServer();
        var paused = Stopwatch.StartNew();
        await DaemonGroup.AllAsync(all, r => r != "LEADER", RenewDeadline + DaemonGroup.ObservationMargin, "the leader to step down by its renew deadline");
        await Poll.UntilAsync(() => Task.FromResult(paused.Elapsed > LeaseDuration + RetryPeriod), Deadline, "the pause to outlast the lease");
        ResumeServer();

        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration + RetryPeriod, $"after {ServerName} resumed");
        Assert.DoesNotContain(all, d => d.HasExited);
        await group.AssertOneLeaderAtATimeAsync();
    }

    [Fact]
    public async Task A_huge_duration_written_by_hand_is_waited_out_and_a_negative_one_reads_as_expired()
    {
        await using var group = Group();
        var all = await StartAllAsync(group, "a", "b");
        await DaemonProcess.SingleLeaderAsync(all);

        // A stranger claiming the lease for 68 years: followed, never taken, nothing overflows.
        await SqlAsync($"UPDATE {Table} SET {HolderColumn} = 'stranger', {DurationColumn} = 2147483647, {TransitionsColumn} = 4 {Where}");
        await Poll.UntilAsync(async () => (await Task.WhenAll(all.Select(HolderAsync))).All(h => h == "stranger"), Deadline, "both daemons to see the stranger");
        var edited = Stopwatch.StartNew();
        await Poll.UntilAsync(() => Task.FromResult(edited.Elapsed > LeaseDuration + RetryPeriod), Deadline, "our own lease duration to pass");
        Assert.All(await Task.WhenAll(all.Select(d => d.RoleAsync())), r => Assert.Equal("FOLLOWER", r));
        Assert.Equal("stranger", await ColumnAsync(HolderColumn));

        // A negative duration means expired, as in client-go: taken at once, with the next term.
        await SqlAsync($"UPDATE {Table} SET {DurationColumn} = -5 {Where}");
        await DaemonGroup.LeaderWithinAsync(all, LeaseDuration, "after the duration went negative");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync(HolderColumn));
        Assert.Equal("5", await ColumnAsync(TransitionsColumn));
        Assert.Equal(5L, await DaemonGroup.TermAsync(leader));
        Assert.DoesNotContain(all, d => d.HasExited);
        await group.AssertOneLeaderAtATimeAsync();
    }

    /// <summary>
    /// One of <paramref name="all"/> leads and is named in the row, and the first daemon logged
    /// <paramref name="lease"/> (where the lease is); on SIGTERM the leader releases it and the
    /// other takes over before the lease could have run out.
    /// </summary>
    private protected async Task HandsOverOnSigtermAsync(DaemonProcess[] all, string lease)
    {
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        Assert.Equal(await IdentityAsync(leader), await ColumnAsync(HolderColumn));
        Assert.Contains(all[0].OutputLines, l => l.Contains(lease, StringComparison.Ordinal));

        var stopped = Stopwatch.StartNew();
        leader.Terminate();
        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        var next = await DaemonProcess.SingleLeaderAsync(all.Where(d => d != leader).ToList());

        Assert.Equal(await IdentityAsync(next), await ColumnAsync(HolderColumn));
        Assert.Equal("1", await ColumnAsync(TransitionsColumn));
        Assert.True(stopped.Elapsed < LeaseDuration, "the handover waited for expiry instead of the release");
    }

    /// <summary>A daemon of <paramref name="identity"/> as <paramref name="user"/> (null: the test user), stopped at the end of the test.</summary>
    private protected async Task<DaemonProcess> StartAsync(string identity, string? user = null, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(DaemonEnvironment, ["--lease-name", "app", "--namespace", "demo", "--identity", identity, Flag, Url(user), .. FastTiming, .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    /// <summary>A group on <paramref name="url"/> (default: the test user's) with <paramref name="timing"/> (default: <see cref="FastTiming"/>).</summary>
    private protected DaemonGroup Group(string? url = null, string[]? timing = null) =>
        new(["--lease-name", "app", "--namespace", "demo", Flag, url ?? Url(), .. timing ?? FastTiming]);

    /// <summary>Daemons of <paramref name="identities"/> in <paramref name="group"/>, started together with <see cref="DaemonEnvironment"/>.</summary>
    private protected async Task<List<DaemonProcess>> StartAllAsync(DaemonGroup group, params string[] identities) =>
        [.. await Task.WhenAll(identities.Select(id => group.StartOneAsync(id, environment: DaemonEnvironment)))];

    /// <summary>One column of the lease's row, as the server's CLI prints it.</summary>
    protected Task<string> ColumnAsync(string column) => SqlAsync($"SELECT {column} FROM {Table} {Where}");

    private protected static async Task<string?> IdentityAsync(DaemonProcess daemon) =>
        (await daemon.GetAsync("/status")).Body.GetProperty("identity").GetString();

    private protected static async Task<string?> HolderAsync(DaemonProcess daemon) =>
        (await daemon.GetAsync("/status")).Body.GetProperty("holder").GetString();
}
