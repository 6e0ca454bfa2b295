using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace LeaderSidecar.Stores.Redis;

/// <summary>
/// A Lua script run atomically on the server by <c>EVALSHA</c>. Its SHA-1 is known up front, so the
/// text is sent only when the server does not have it (<c>NOSCRIPT</c>: first use, a restart, a
/// <c>SCRIPT FLUSH</c>): then <c>SCRIPT LOAD</c> and the same <c>EVALSHA</c> again. A
/// <c>NOSCRIPT</c> reply means the script did not run, so sending it again is safe.
/// </summary>
internal sealed class RedisScript(string name, string text)
{
    public string Name { get; } = name;

    /// <summary>The script's name on the server: Redis names scripts by their SHA-1.</summary>
    [SuppressMessage("Security", "CA5350", Justification = "Redis names scripts by SHA-1; nothing is protected by it.")]
    public string Sha { get; } = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(text)));

    public string Text { get; } = text;

    /// <summary>Runs the script; returns its reply (possibly an error reply) and whether the text had to be loaded first.</summary>
    public async Task<(RespValue Reply, bool Loaded)> RunAsync(RedisConnection connection, IReadOnlyList<string> keys, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        string[] command = ["EVALSHA", Sha, keys.Count.ToString(CultureInfo.InvariantCulture), .. keys, .. arguments];
        var reply = await connection.CallAsync(command, cancellationToken);
        if (reply.ErrorCode != "NOSCRIPT")
        {
            return (reply, false);
        }

        var load = await connection.CallAsync(["SCRIPT", "LOAD", Text], cancellationToken);
        if (load.IsError)
        {
            return (load, true);
        }

        if (load.Text != Sha)
        {
            throw new RespProtocolException($"SCRIPT LOAD of the {Name} script answered \"{Kubernetes.KubernetesLeaseStore.Shorten(load.Text)}\", not its SHA-1");
        }

        return (await connection.CallAsync(command, cancellationToken), true);
    }
}
