using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Faults;

namespace LeaderSidecar.Tests.Safety;

/// <summary>
/// The Kubernetes backend on the Lease API test server, over TLS, each replica with its own token.
/// Its store faults are the test server's own hooks: latency, errors, throttling, a partition of
/// one replica's requests, watches ended or expired, a restart that loses the watch history.
/// </summary>
internal sealed class KubernetesSafetyBackend : ISafetyBackend
{
    private readonly LeaseApiServer _server;
    private readonly TempDirectory _dir = new();

    private KubernetesSafetyBackend(LeaseApiServer server)
    {
        _server = server;
    }

    public IReadOnlySet<FaultKind> Faults { get; } = new HashSet<FaultKind>
    {
        FaultKind.Latency, FaultKind.ServerErrors, FaultKind.Throttling, FaultKind.PartitionLeader, FaultKind.PartitionFollower,
        FaultKind.DropWatches, FaultKind.ExpireWatches, FaultKind.RestartStore, FaultKind.DeleteLease, FaultKind.RewriteLease,
    };

    public static async Task<KubernetesSafetyBackend> StartAsync(IReadOnlyList<SafetyCluster.Replica> replicas)
    {
        var backend = new KubernetesSafetyBackend(await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true }));
        foreach (var replica in replicas)
        {
            backend._server.Tokens.Set(Token(replica), new ApiUser($"system:serviceaccount:{SafetyCluster.Namespace}:{replica.Identity}", LeaseRule.ForElection(SafetyCluster.Namespace, SafetyCluster.LeaseName)));
            backend._server.WriteKubeconfig(backend.Kubeconfig(replica), Token(replica), SafetyCluster.Namespace);
        }

        return backend;
    }

    public IEnumerable<string> Arguments(SafetyCluster.Replica replica) => ["--backend", "kubernetes", "--kubeconfig", Kubeconfig(replica)];

    public Task InjectAsync(FaultKind kind, FaultRound round)
    {
        switch (kind)
        {
            case FaultKind.Latency:
                var delay = SafetyCluster.RenewDeadline + round.Between(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1));
                round.Note($"API latency {delay.TotalMilliseconds:0} ms");
                round.HealWith("latency removed", _server.Faults.AddLatency(delay));
                break;

            case FaultKind.ServerErrors:
                var error = round.Random.Next(3) switch
                {
                    0 => FaultResponse.InternalError(),
                    1 => FaultResponse.ServiceUnavailable(),
                    _ => FaultResponse.Timeout(),
                };
                round.Note($"API answers {error.Code}");
                round.HealWith("errors stopped", _server.Faults.FailAll(error));
                break;

            case FaultKind.Throttling:
                var throttle = round.Random.Next(2) == 0 ? FaultResponse.TooManyRequests() : FaultResponse.TooManyRequestsPlainText();
                round.Note("API answers 429");
                round.HealWith("throttling stopped", _server.Faults.FailAll(throttle));
                break;

            case FaultKind.PartitionLeader:
            case FaultKind.PartitionFollower:
                var cut = kind == FaultKind.PartitionFollower ? round.Follower() : round.Victim;
                round.Note($"partition {cut.Label}");
                round.HealWith($"partition of {cut.Label} healed", _server.Faults.Hang(new RequestFilter(Token: Token(cut))));
                break;

            case FaultKind.DropWatches:
                for (var i = 1 + round.Random.Next(3); i > 0; i--)
                {
                    var abort = round.Random.Next(2) == 0;
                    round.AtSomeMoment(() =>
                    {
                        round.Note(abort ? "watches reset" : "watches ended");
                        _server.DropWatches(abort);
                        return Task.CompletedTask;
                    });
                }

                break;

            case FaultKind.ExpireWatches:
                round.AtSomeMoment(() =>
                {
                    round.Note("watches expired (410)");
                    _server.ExpireWatches();
                    return Task.CompletedTask;
                });
                break;

            case FaultKind.RestartStore:
                round.Note("API server down");
                _server.Faults.RefuseConnections = true;
                _server.Restart();
                round.Heals.Add(() =>
                {
                    _server.Faults.RefuseConnections = false;
                    round.Note("API server up");
                    return Task.CompletedTask;
                });
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "not a fault of the Kubernetes backend");
        }

        return Task.CompletedTask;
    }

    public Task<string> DeleteLeaseAsync() => Task.FromResult(
        _server.Store.Delete(SafetyCluster.Namespace, SafetyCluster.LeaseName) ? "lease deleted" : "lease deleted (it was not there)");

    public Task<string> RewriteLeaseAsync(string holder, bool newTerm)
    {
        if (_server.Store.Get(SafetyCluster.Namespace, SafetyCluster.LeaseName) is null)
        {
            return Task.FromResult($"lease not rewritten to {holder}: it does not exist");
        }

        var now = DateTimeOffset.UtcNow;
        now = new DateTimeOffset(now.UtcTicks - (now.UtcTicks % 10), TimeSpan.Zero);
        _server.Store.Update(SafetyCluster.Namespace, SafetyCluster.LeaseName, spec => spec with
        {
            HolderIdentity = holder,
            LeaseDurationSeconds = (int)SafetyCluster.LeaseDuration.TotalSeconds,
            AcquireTime = now,
            RenewTime = now,
            LeaseTransitions = (spec.LeaseTransitions ?? 0) + (newTerm ? 1 : 0),
        });
        return Task.FromResult(HandEdit.Rewritten(holder, newTerm));
    }

    /// <summary>The API server validates every Lease: garbage cannot be stored.</summary>
    public Task<string> PutGarbageAsync(string garbage) => throw new NotSupportedException();

    public Task<string> ClearGarbageAsync(string garbage) => throw new NotSupportedException();

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private static string Token(SafetyCluster.Replica replica) => $"token-{replica.Identity}";

    private string Kubeconfig(SafetyCluster.Replica replica) => _dir.File($"{replica.Identity}.kubeconfig");
}
