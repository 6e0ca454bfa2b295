using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>Daemons on the Kubernetes backend against one Lease API test server, each with its own token and rules.</summary>
internal sealed class KubernetesDaemons(LeaseApiServer server, TempDirectory dir, string namespaceName, string leaseName) : IAsyncDisposable
{
    private readonly List<DaemonProcess> _daemons = [];

    /// <summary>Starts one daemon per identity, each allowed the election's rules plus <paramref name="extraRules"/>.</summary>
    public async Task<List<DaemonProcess>> StartAsync(string[] extraArgs, IReadOnlyList<LeaseRule> extraRules, params string[] identities)
    {
        var started = await Task.WhenAll(identities.Select(async id =>
        {
            var token = $"token-{id}";
            server.Tokens.Set(token, new ApiUser($"system:serviceaccount:{namespaceName}:{id}", [.. LeaseRule.ForElection(namespaceName, leaseName), .. extraRules]));
            var kubeconfig = dir.File($"{id}.kubeconfig");
            server.WriteKubeconfig(kubeconfig, token, namespaceName);
            return await DaemonProcess.StartAsync(["--lease-name", leaseName, "--namespace", namespaceName, "--kubeconfig", kubeconfig, "--identity", id, .. extraArgs]);
        }));
        lock (_daemons)
        {
            _daemons.AddRange(started);
        }

        return [.. started];
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }
    }
}
