using System.Text.Json;

namespace LeaderSidecar.Tests.Stores.Etcd;

// What a member of a several-member cluster needs beyond a single etcd: its own name, the list of
// every peer, and a start in two steps (a member answers only once a quorum of them runs).
internal sealed partial class EtcdServer
{
    private readonly string _name;
    private string? _initialCluster;

    /// <summary>The member's name in the cluster.</summary>
    public string Name => _name;

    /// <summary>The members of one new cluster, not started yet; each knows every peer.</summary>
    internal static EtcdServer[] CreateMembers(int count)
    {
        var members = Enumerable.Range(1, count).Select(i => new EtcdServer([], name: $"member{i}")).ToArray();
        var cluster = string.Join(',', members.Select(m => $"{m._name}={m.PeerUrl}"));
        foreach (var member in members)
        {
            member._initialCluster = cluster;
        }

        return members;
    }

    /// <summary>Starts every member, then waits until each answers a linearizable read.</summary>
    internal static async Task LaunchAllAsync(IReadOnlyList<EtcdServer> members)
    {
        foreach (var member in members)
        {
            member.StartProcess();
        }

        foreach (var member in members)
        {
            await member.WaitUntilAnsweringAsync();
        }
    }

    /// <summary>Whether this member is the raft leader now, by its own account (<c>etcdctl endpoint status</c>).</summary>
    public async Task<bool> IsRaftLeaderAsync()
    {
        using var answer = JsonDocument.Parse(await EtcdctlAsync("endpoint", "status", "-w", "json"));
        var status = answer.RootElement[0].GetProperty("Status");

        // No "leader" field (zero, omitted) while the members elect one.
        return status.TryGetProperty("leader", out var leader) && status.GetProperty("header").GetProperty("member_id").GetRawText() == leader.GetRawText();
    }
}
