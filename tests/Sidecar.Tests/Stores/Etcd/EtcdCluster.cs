namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>
/// A real etcd cluster of several members (three by default) on loopback ports, each an
/// <see cref="EtcdServer"/> with its own data directory, so each can be paused, killed and
/// restarted on its own. Stopped and deleted on dispose.
/// </summary>
internal sealed class EtcdCluster : IAsyncDisposable
{
    private EtcdCluster(IReadOnlyList<EtcdServer> members)
    {
        Members = members;
    }

    public IReadOnlyList<EtcdServer> Members { get; }

    /// <summary>Every member's client URL, in member order, as <c>--etcd-endpoints</c> takes them.</summary>
    public string Endpoints => string.Join(',', Members.Select(m => m.Endpoint.GetLeftPart(UriPartial.Authority)));

    public static async Task<EtcdCluster> StartAsync(int size = 3)
    {
        var cluster = new EtcdCluster(EtcdServer.CreateMembers(size));
        try
        {
            await EtcdServer.LaunchAllAsync(cluster.Members);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>The member that is the raft leader, once the members agree there is one.</summary>
    public async Task<EtcdServer> RaftLeaderAsync()
    {
        EtcdServer? leader = null;
        await Poll.UntilAsync(
            async () =>
            {
                foreach (var member in Members.Where(m => m.IsRunning))
                {
                    if (await member.IsRaftLeaderAsync())
                    {
                        leader = member;
                        return true;
                    }
                }

                return false;
            },
            TimeSpan.FromSeconds(30),
            "an etcd raft leader");
        return leader!;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var member in Members)
        {
            await member.DisposeAsync();
        }
    }
}
