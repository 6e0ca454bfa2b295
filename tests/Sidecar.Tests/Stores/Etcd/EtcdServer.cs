using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using LeaderSidecar.Stores.Etcd.Protocol;

namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>
/// A real etcd member (Debian's <c>etcd-server</c>) on free loopback ports with a temporary data
/// directory, for tests: on its own a single-member cluster, or one member of an
/// <see cref="EtcdCluster"/> (EtcdServer.Cluster.cs); over https with <see cref="StartTlsAsync"/>
/// (EtcdServer.Tls.cs). It can be paused, killed and restarted with the same data, and is stopped
/// and deleted on dispose.
/// </summary>
internal sealed partial class EtcdServer : ServerProcess, IAsyncDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly int _clientPort = FreePort();
    private readonly int _peerPort = FreePort();
    private readonly GrpcChannel _channel;

    private readonly string[] _extraArgs;

    private EtcdServer(string[] extraArgs, EtcdTls? tls = null, string name = "test")
    {
        _extraArgs = extraArgs;
        _tls = tls;
        _name = name;
        Endpoint = new Uri(ClientUrl);
        _channel = tls is null ? GrpcChannel.ForAddress(Endpoint) : GrpcChannel.ForAddress(Endpoint, new GrpcChannelOptions { HttpHandler = tls.Handler() });
    }

    public Uri Endpoint { get; }

    // etcd refuses a URL with a path, even "/".
    private string ClientUrl => $"{(_tls is null ? "http" : "https")}://127.0.0.1:{_clientPort}";

    private string PeerUrl => $"http://127.0.0.1:{_peerPort}";

    /// <summary>A root token for the test's own requests once auth is on; null before.</summary>
    public string? RootPassword { get; private set; }

    public string Log => File.Exists(_dir.File("etcd.log")) ? File.ReadAllText(_dir.File("etcd.log")) : "";

    /// <param name="extraArgs">More etcd flags, such as <c>--auth-token-ttl 1</c>.</param>
    public static async Task<EtcdServer> StartAsync(params string[] extraArgs)
    {
        var server = new EtcdServer(extraArgs);
        try
        {
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public async Task PutAsync(string key, byte[] value) =>
        await Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value) }, await HeadersAsync(), Deadline());

    public async Task DeleteAsync(string key) =>
        await Kv.DeleteRangeAsync(new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) }, await HeadersAsync(), Deadline());

    /// <summary>Writes another key, moving the store's revision on; returns the new revision.</summary>
    public async Task<long> BumpAsync() =>
        (await Kv.PutAsync(new PutRequest { Key = ByteString.CopyFromUtf8("/other"), Value = ByteString.CopyFromUtf8("x") }, await HeadersAsync(), Deadline())).Header.Revision;

    /// <summary>Compacts the history up to <paramref name="revision"/> (physically, before returning).</summary>
    public async Task CompactAsync(long revision) =>
        await Kv.CompactAsync(new CompactionRequest { Revision = revision, Physical = true }, await HeadersAsync(), Deadline());

    /// <summary>Runs <c>etcdctl</c> against this member (as root once auth is on); fails the test on a non-zero exit.</summary>
    public async Task<string> EtcdctlAsync(params string[] args)
    {
        var info = new ProcessStartInfo("etcdctl") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        info.Environment["ETCDCTL_API"] = "3";
        info.ArgumentList.Add($"--endpoints={ClientUrl}");
        foreach (var arg in _tls?.EtcdctlArgs() ?? [])
        {
            info.ArgumentList.Add(arg);
        }
        if (RootPassword is not null)
        {
            info.ArgumentList.Add($"--user=root:{RootPassword}");
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(deadline.Token);
        Assert.True(process.ExitCode == 0, $"etcdctl {string.Join(' ', args)} exited {process.ExitCode}: {await error}");
        return await output;
    }

    /// <summary>Turns auth on: a root user (for the tests' own requests) and nothing else yet.</summary>
    public async Task EnableAuthAsync()
    {
        await EtcdctlAsync("user", "add", "root:rootpw");
        await EtcdctlAsync("auth", "enable");
        RootPassword = "rootpw";
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _channel.Dispose();
        _dir.Dispose();
    }

    private KV.KVClient Kv => new(_channel);

    private static DateTime Deadline() => DateTime.UtcNow.AddSeconds(10);

    private async Task<Metadata> HeadersAsync()
    {
        var headers = new Metadata();
        if (RootPassword is not null)
        {
            var answer = await new Auth.AuthClient(_channel).AuthenticateAsync(new AuthenticateRequest { Name = "root", Password = RootPassword }, deadline: Deadline());
            headers.Add("token", answer.Token);
        }

        return headers;
    }

    protected override async Task LaunchAsync()
    {
        StartProcess();
        await WaitUntilAnsweringAsync();
    }

    private void StartProcess()
    {
        var info = new ProcessStartInfo("etcd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "--name", _name, "--data-dir", _dir.File("data"),
            "--listen-client-urls", ClientUrl, "--advertise-client-urls", ClientUrl,
            "--listen-peer-urls", PeerUrl, "--initial-advertise-peer-urls", PeerUrl, "--initial-cluster", _initialCluster ?? $"{_name}={PeerUrl}",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-outputs", _dir.File("etcd.log"),
        }.Concat(_tls?.ServerArgs() ?? []).Concat(_extraArgs))
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info)!;
        Server = process;
        // Drained, not closed: a Go program writing to a closed pipe dies of SIGPIPE.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    private async Task WaitUntilAnsweringAsync()
    {
        var process = Server!;

        // Up means: a linearizable read is answered (a leader is elected), or an auth error says so.
        await Poll.UntilAsync(
            async () =>
            {
                if (process.HasExited)
                {
                    Assert.Fail($"etcd exited ({process.ExitCode}): {Log}");
                }

                try
                {
                    await Kv.RangeAsync(new RangeRequest { Key = ByteString.CopyFromUtf8("/") }, deadline: DateTime.UtcNow.AddSeconds(1));
                    return true;
                }
                catch (RpcException e)
                {
                    return e.StatusCode is not (StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Internal);
                }
            },
            TimeSpan.FromSeconds(30),
            "etcd to answer");
    }

}
