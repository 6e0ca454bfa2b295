using System.Globalization;
using LeaderSidecar.Tests.Stores.Redis;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The redis backend on a real Redis (append-only file on), each daemon through its own
/// <see cref="TcpProxy"/>. Beyond the network faults and outages (SIGSTOP; SIGKILL, then a new
/// server on the same append-only file), Redis's own commands through <c>redis-cli</c>: the
/// daemons' connections killed (<c>CLIENT KILL TYPE pubsub</c>, <c>normal</c>, or both), the
/// server blocked past the lease (<c>DEBUG SLEEP</c>, <c>CLIENT PAUSE</c>), its scripts
/// forgotten (<c>SCRIPT FLUSH</c>), everything deleted (<c>FLUSHALL</c>), and hand edits of the
/// hash (<c>DEL</c>, <c>HSET</c>, a key of another type). A hand edit publishes nothing, as an
/// operator's would not.
/// </summary>
internal sealed class RedisSafetyBackend : ServerSafetyBackend
{
    private const string Key = $"leader-sidecar:{SafetyCluster.Namespace}:{SafetyCluster.LeaseName}";
    private const string StringAtKey = "a string at the key";
    private const string NoVersion = "a hash without a version";

    /// <summary>The garbage that is a bad <c>leaseDurationSeconds</c> in the hash, by name; the heal sets it right.</summary>
    private static readonly Dictionary<string, string> BadDurations = new()
    {
        ["negative duration"] = "-5",
        ["zero duration"] = "0",
        ["huge duration"] = "2147483647",
        ["duration past 32 bits"] = "99999999999",
        ["duration not a number"] = "soon",
    };

    private readonly RedisServer _server;

    private RedisSafetyBackend(RedisServer server, IReadOnlyList<SafetyCluster.Replica> replicas)
        : base("redis", server.Port, replicas)
    {
        _server = server;
    }

    public override IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>(
    [
        .. CommonFaults, FaultKind.SeverConnections, FaultKind.StoreSleep, FaultKind.PauseClients, FaultKind.ScriptFlush, FaultKind.FlushAll,
    ]);

    public override IReadOnlyList<string> Garbage { get; } = [StringAtKey, NoVersion, .. BadDurations.Keys];

    public static async Task<RedisSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas) =>
        new(await RedisServer.StartAsync(), replicas);

    public override IEnumerable<string> Arguments(SafetyCluster.Replica replica) =>
        ["--backend", "redis", "--redis", $"redis://127.0.0.1:{ProxyPort(replica)}/0"];

    public override async Task<string> DeleteLeaseAsync() =>
        Unavailable("deleted")
        ?? (await CliAsync("DEL", Key) == "1" ? "lease deleted (redis-cli DEL)" : "lease deleted (it was not there)");

    public override async Task<string> RewriteLeaseAsync(string holder, bool newTerm)
    {
        if (Unavailable($"rewritten to {holder}") is { } skipped)
        {
            return skipped;
        }

        switch (await CliAsync("TYPE", Key))
        {
            case "none":
                return $"lease not rewritten to {holder}: it does not exist";
            case not "hash":
                return $"lease not rewritten to {holder}: it holds garbage";
        }

        if (!int.TryParse(await CliAsync("HGET", Key, "leaseTransitions"), CultureInfo.InvariantCulture, out var term))
        {
            return $"lease not rewritten to {holder}: it holds garbage";
        }

        var now = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
        await CliAsync(
            "HSET", Key, "holderIdentity", holder, "leaseDurationSeconds", ((int)SafetyCluster.LeaseDuration.TotalSeconds).ToString(CultureInfo.InvariantCulture),
            "acquireTime", now, "renewTime", now, "leaseTransitions", (term + (newTerm ? 1 : 0)).ToString(CultureInfo.InvariantCulture));
        return HandEdit.Rewritten(holder, newTerm) + " (redis-cli HSET)";
    }

    public override async Task<string> PutGarbageAsync(string garbage)
    {
        if (Unavailable("overwritten with garbage") is { } skipped)
        {
            return skipped;
        }

        switch (garbage)
        {
            case StringAtKey:
                await CliAsync("DEL", Key);
                await CliAsync("SET", Key, "not a lease record");
                return "lease replaced by a string (redis-cli SET)";
            case NoVersion:
                await CliAsync("DEL", Key);
                await CliAsync("HSET", Key, "holderIdentity", "intruder", "leaseDurationSeconds", "3");
                return "lease replaced by a hash without version or uid (redis-cli HSET)";
            default:
                // On the hash as it is; with no key there, a hash of that one field.
                await CliAsync("HSET", Key, "leaseDurationSeconds", BadDurations[garbage]);
                return $"lease given a {garbage}, leaseDurationSeconds {BadDurations[garbage]} (redis-cli HSET)";
        }
    }

    public override async Task<string> ClearGarbageAsync(string garbage)
    {
        if (Unavailable("cleared of garbage") is { } skipped)
        {
            return skipped;
        }

        var type = await CliAsync("TYPE", Key);
        var hasVersion = type == "hash" && await CliAsync("HEXISTS", Key, "version") == "1";
        var stillThere = garbage switch
        {
            StringAtKey => type == "string",
            NoVersion => type == "hash" && !hasVersion,
            _ => type == "hash" && await CliAsync("HGET", Key, "leaseDurationSeconds") == BadDurations[garbage],
        };
        if (!stillThere)
        {
            return "garbage already gone";
        }

        if (hasVersion)
        {
            // An operator sets the duration right: deleting the key would leave the sidecars waiting the duration they saw last.
            await CliAsync("HSET", Key, "leaseDurationSeconds", ((int)SafetyCluster.LeaseDuration.TotalSeconds).ToString(CultureInfo.InvariantCulture));
            return "garbage repaired: duration set right (redis-cli HSET)";
        }

        await CliAsync("DEL", Key);
        return "garbage deleted (redis-cli DEL)";
    }

    protected override async Task InjectServerFaultAsync(FaultKind kind, FaultRound round)
    {
        switch (kind)
        {
            case FaultKind.SeverConnections:
                var types = round.Random.Next(3) switch { 0 => ["pubsub"], 1 => ["normal"], _ => new[] { "pubsub", "normal" } };
                AtSomeMoments(round, async () =>
                {
                    foreach (var type in types)
                    {
                        round.Note(UnavailableState is { } state
                            ? $"no {type} client killed: redis is {state}"
                            : $"CLIENT KILL TYPE {type}: {await CliAsync("CLIENT", "KILL", "TYPE", type)} killed");
                    }
                });
                break;

            case FaultKind.StoreSleep:
                // Past the lease, and over before the heal; the heal waits until Redis answers again.
                var sleep = round.Hold - TimeSpan.FromMilliseconds(300);
                await _server.SleepAsync(Math.Round(sleep.TotalSeconds, 1));
                Unavailable(round, "asleep", $"DEBUG SLEEP {sleep.TotalSeconds:0.0} s", "redis awake", () => CliAsync("PING"));
                break;

            case FaultKind.PauseClients:
                var pause = round.Hold - TimeSpan.FromMilliseconds(300);
                await CliAsync("CLIENT", "PAUSE", ((long)pause.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "ALL");
                Unavailable(round, "pausing its clients", $"CLIENT PAUSE {pause.TotalMilliseconds:0} ms ALL", "client pause over", () => CliAsync("PING"));
                break;

            case FaultKind.ScriptFlush:
                AtSomeMoments(round, async () =>
                {
                    if (UnavailableState is { } state)
                    {
                        round.Note($"scripts not flushed: redis is {state}");
                        return;
                    }

                    await _server.ScriptFlushAsync();
                    round.Note("SCRIPT FLUSH");
                });
                break;

            case FaultKind.FlushAll:
                round.AtSomeMoment(async () => round.Note(Unavailable("flushed") ?? $"FLUSHALL: {await CliAsync("FLUSHALL")}"));
                break;

            default:
                await base.InjectServerFaultAsync(kind, round);
                break;
        }
    }

    protected override void PauseServer() => _server.Pause();

    protected override void ResumeServer() => _server.Resume();

    protected override Task StopServerAsync() => _server.StopAsync();

    protected override Task RestartServerAsync() => _server.RestartAsync();

    protected override ValueTask DisposeServerAsync() => _server.DisposeAsync();

    private async Task<string> CliAsync(params string[] args) => (await _server.CliAsync(args)).Trim();
}
