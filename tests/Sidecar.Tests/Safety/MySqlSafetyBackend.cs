using System.Globalization;
using LeaderSidecar.Tests.Stores.MySql;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The mysql backend on a real MariaDB, each daemon through its own <see cref="TcpProxy"/>, as the
/// test server's password user. Beyond the network faults and outages (SIGSTOP of the server;
/// SIGKILL, then InnoDB recovery on the same data), the server ends the daemons' connections
/// itself (<c>KILL</c> of each connection id it lists for their user), and the hand edits are SQL
/// in the real <c>mariadb</c> client as root: the row deleted, rewritten, or given a value no
/// record has.
/// </summary>
internal sealed class MySqlSafetyBackend : ServerSafetyBackend
{
    private const string Table = "leader_sidecar_leases";
    private const string Where = $"WHERE namespace = '{SafetyCluster.Namespace}' AND name = '{SafetyCluster.LeaseName}'";

    /// <summary>Each garbage: the assignment that writes it, the condition that says it is still there, and whether the heal repairs (else deletes) it.</summary>
    private static readonly Dictionary<string, (string Set, string StillThere, bool Repair)> Garbages = new()
    {
        ["negative duration"] = ("leaseDurationSeconds = -5", "leaseDurationSeconds = -5", true),
        ["zero duration"] = ("leaseDurationSeconds = 0", "leaseDurationSeconds = 0", true),
        ["huge duration"] = ("leaseDurationSeconds = 2147483647", "leaseDurationSeconds = 2147483647", true),
        ["negative term"] = ("leaseTransitions = -1", "leaseTransitions = -1", false),
    };

    private readonly MariaDbServer _server;
    private readonly TempDirectory _dir = new();

    private MySqlSafetyBackend(MariaDbServer server, IReadOnlyList<SafetyCluster.Replica> replicas)
        : base("mariadb", server.Port, replicas)
    {
        _server = server;
        File.WriteAllText(_dir.File("password"), MariaDbServer.Password + "\n");
    }

    public override IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>([.. CommonFaults, FaultKind.SeverConnections]);

    public override IReadOnlyList<string> Garbage { get; } = [.. Garbages.Keys];

    public static async Task<MySqlSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas) =>
        new(await MariaDbServer.StartAsync(), replicas);

    public override IEnumerable<string> Arguments(SafetyCluster.Replica replica) =>
    [
        "--backend", "mysql", "--mysql", $"mysql://{MariaDbServer.User}@127.0.0.1:{ProxyPort(replica)}/{MariaDbServer.Database}",
        "--mysql-password-file", _dir.File("password"),
    ];

    public override async Task<string> DeleteLeaseAsync() =>
        Unavailable("deleted")
        ?? (await CountAsync($"DELETE FROM {Table} {Where}") == 1 ? "lease deleted (mariadb DELETE)" : "lease deleted (it was not there)");

    public override async Task<string> RewriteLeaseAsync(string holder, bool newTerm) =>
        Unavailable($"rewritten to {holder}")
        ?? (await CountAsync(
                $"UPDATE {Table} SET holderIdentity = '{holder}', leaseDurationSeconds = {(int)SafetyCluster.LeaseDuration.TotalSeconds}, " +
                $"acquireTime = UTC_TIMESTAMP(6), renewTime = UTC_TIMESTAMP(6), leaseTransitions = leaseTransitions + {(newTerm ? 1 : 0)}, version = version + 1 {Where}") == 1
            ? HandEdit.Rewritten(holder, newTerm) + " (mariadb UPDATE)"
            : $"lease not rewritten to {holder}: it does not exist");

    public override async Task<string> PutGarbageAsync(string garbage)
    {
        if (Unavailable("overwritten with garbage") is { } skipped)
        {
            return skipped;
        }

        // On the row as it is, or on a row of a stranger's when there is none.
        await _server.SqlAsync(
            $"INSERT IGNORE INTO {Table} (namespace, name, holderIdentity, leaseDurationSeconds, leaseTransitions, version, uid) " +
            $"VALUES ('{SafetyCluster.Namespace}', '{SafetyCluster.LeaseName}', 'intruder', {(int)SafetyCluster.LeaseDuration.TotalSeconds}, 0, 1, UUID()); " +
            $"UPDATE {Table} SET {Garbages[garbage].Set}, version = version + 1 {Where}");
        return $"lease row given a {garbage} (mariadb UPDATE)";
    }

    public override async Task<string> ClearGarbageAsync(string garbage)
    {
        if (Unavailable("cleared of garbage") is { } skipped)
        {
            return skipped;
        }

        var (_, stillThere, repair) = Garbages[garbage];
        if (repair)
        {
            // An operator sets the duration right: deleting the row would leave the sidecars waiting the duration they saw last.
            return await CountAsync($"UPDATE {Table} SET leaseDurationSeconds = {(int)SafetyCluster.LeaseDuration.TotalSeconds}, version = version + 1 {Where} AND {stillThere}") == 1
                ? "garbage repaired: duration set right (mariadb UPDATE)"
                : "garbage already gone";
        }

        return await CountAsync($"DELETE FROM {Table} {Where} AND {stillThere}") == 1 ? "garbage deleted (mariadb DELETE)" : "garbage already gone";
    }

    protected override async Task InjectServerFaultAsync(FaultKind kind, FaultRound round)
    {
        if (kind != FaultKind.SeverConnections)
        {
            await base.InjectServerFaultAsync(kind, round);
            return;
        }

        AtSomeMoments(round, async () =>
        {
            if (UnavailableState is { } state)
            {
                round.Note($"no connection killed: mariadb is {state}");
                return;
            }

            var ids = (await _server.SqlAsync($"SELECT id FROM information_schema.processlist WHERE user = '{MariaDbServer.User}'"))
                .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var killed = 0;
            foreach (var id in ids)
            {
                // One at a time: a connection that ended meanwhile is an error that would stop the rest.
                killed += (await _server.CliAsync($"KILL {id}")).Code == 0 ? 1 : 0;
            }

            round.Note($"KILL of the sidecars' {killed.ToString(CultureInfo.InvariantCulture)} connections");
        });
    }

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override async ValueTask DisposeServerAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>Runs a data-modifying statement in <c>mariadb</c> and returns how many rows it touched.</summary>
    private async Task<int> CountAsync(string statement) =>
        int.Parse((await _server.SqlAsync($"{statement}; SELECT ROW_COUNT()")).Trim(), CultureInfo.InvariantCulture);
}
