using LeaderSidecar.Tests.Stores.Postgres;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The postgres backend on a real PostgreSQL 15, each daemon through its own <see cref="TcpProxy"/>.
/// Beyond the network faults and outages (SIGSTOP of the postmaster and every backend; SIGKILL of
/// them all, then a new server on the same data), the server ends the daemons' sessions itself
/// (<c>pg_terminate_backend</c>), and the hand edits are SQL in the real <c>psql</c>, as the
/// superuser: the row deleted, rewritten, or given a value no record has.
/// </summary>
internal sealed class PostgresSafetyBackend : ServerSafetyBackend
{
    private const string Table = "leader_sidecar_leases";
    private const string Where = $"WHERE namespace = '{SafetyCluster.Namespace}' AND name = '{SafetyCluster.LeaseName}'";

    /// <summary>Each garbage: the assignment that writes it, and the condition that says it is still there.</summary>
    private static readonly Dictionary<string, (string Set, string StillThere, bool Repair)> Garbages = new()
    {
        ["negative duration"] = ("lease_duration_seconds = -5", "lease_duration_seconds = -5", true),
        ["zero duration"] = ("lease_duration_seconds = 0", "lease_duration_seconds = 0", true),
        ["huge duration"] = ("lease_duration_seconds = 2147483647", "lease_duration_seconds = 2147483647", true),
        ["negative term"] = ("lease_transitions = -1", "lease_transitions = -1", false),
        ["holder of 70000 characters"] = ("holder_identity = repeat('x', 70000)", "char_length(holder_identity) = 70000", false),
    };

    private readonly PostgresServer _server;

    private PostgresSafetyBackend(PostgresServer server, IReadOnlyList<SafetyCluster.Replica> replicas)
        : base("postgres", server.Port, replicas)
    {
        _server = server;
    }

    public override IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>([.. CommonFaults, FaultKind.SeverConnections]);

    public override IReadOnlyList<string> Garbage { get; } = [.. Garbages.Keys];

    public static async Task<PostgresSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas) =>
        new(await PostgresServer.StartAsync(), replicas);

    /// <summary>As the superuser, whom the test server trusts over loopback (the proxy connects from there).</summary>
    public override IEnumerable<string> Arguments(SafetyCluster.Replica replica) =>
        ["--backend", "postgres", "--postgres", $"postgresql://postgres@127.0.0.1:{ProxyPort(replica)}/postgres"];

    public override async Task<string> DeleteLeaseAsync() =>
        Unavailable("deleted")
        ?? (await CountAsync($"DELETE FROM {Table} {Where}") == 1 ? "lease deleted (psql DELETE)" : "lease deleted (it was not there)");

    public override async Task<string> RewriteLeaseAsync(string holder, bool newTerm) =>
        Unavailable($"rewritten to {holder}")
        ?? (await CountAsync(
                $"UPDATE {Table} SET holder_identity = '{holder}', lease_duration_seconds = {(int)SafetyCluster.LeaseDuration.TotalSeconds}, " +
                $"acquire_time = now(), renew_time = now(), lease_transitions = lease_transitions + {(newTerm ? 1 : 0)} {Where}") == 1
            ? HandEdit.Rewritten(holder, newTerm) + " (psql UPDATE)"
            : $"lease not rewritten to {holder}: it does not exist");

    public override async Task<string> PutGarbageAsync(string garbage)
    {
        if (Unavailable("overwritten with garbage") is { } skipped)
        {
            return skipped;
        }

        // On the row as it is, or on a row of a stranger's when there is none.
        await _server.PsqlAsync(
            $"INSERT INTO {Table} (namespace, name, holder_identity, lease_duration_seconds) VALUES ('{SafetyCluster.Namespace}', '{SafetyCluster.LeaseName}', 'intruder', " +
            $"{(int)SafetyCluster.LeaseDuration.TotalSeconds}) ON CONFLICT DO NOTHING; UPDATE {Table} SET {Garbages[garbage].Set} {Where}");
        return $"lease row given a {garbage} (psql UPDATE)";
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
            return await CountAsync($"UPDATE {Table} SET lease_duration_seconds = {(int)SafetyCluster.LeaseDuration.TotalSeconds} {Where} AND {stillThere}") == 1
                ? "garbage repaired: duration set right (psql UPDATE)"
                : "garbage already gone";
        }

        return await CountAsync($"DELETE FROM {Table} {Where} AND {stillThere}") == 1 ? "garbage deleted (psql DELETE)" : "garbage already gone";
    }

    protected override async Task InjectServerFaultAsync(FaultKind kind, FaultRound round)
    {
        if (kind != FaultKind.SeverConnections)
        {
            await base.InjectServerFaultAsync(kind, round);
            return;
        }

        AtSomeMoments(round, async () => round.Note(
            UnavailableState is { } state
                ? $"no session terminated: postgres is {state}"
                : $"pg_terminate_backend of the sidecars' {await _server.PsqlAsync("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'leader-sidecar'")} sessions"));
    }

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override ValueTask DisposeServerAsync() => _server.DisposeAsync();

    /// <summary>Runs a data-modifying statement in <c>psql</c> and returns how many rows it touched.</summary>
    private async Task<int> CountAsync(string statement) =>
        int.Parse(await _server.PsqlAsync($"WITH touched AS ({statement} RETURNING 1) SELECT count(*) FROM touched"), System.Globalization.CultureInfo.InvariantCulture);
}
