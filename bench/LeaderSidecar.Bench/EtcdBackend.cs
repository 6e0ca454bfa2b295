using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Bench;

/// <summary>
/// The etcd backend (<c>bench/run --backend etcd</c>): one real etcd member (Debian's
/// <c>etcd-server</c>) on free loopback ports with a data directory in the run's scratch directory,
/// started before the first scenario and killed after the last. A counted daemon reaches etcd
/// through its own <see cref="CountingProxy"/>, so its requests are counted per replica on the
/// wire; the others connect directly. There is no polling reference on etcd: the report puts the
/// Kubernetes section's figures beside these.
/// </summary>
internal sealed partial class EtcdBackend : ServerBackend
{
    private const string Range = "etcdserverpb.KV/Range";
    private const string Txn = "etcdserverpb.KV/Txn";
    private const string Watch = "etcdserverpb.Watch/Watch";
    private const string Other = "other";

    private static readonly RequestColumn[] Columns =
    [
        new(Range, "Range", RequestKind.Read),
        new(Txn, "Txn", RequestKind.Write),
        new(Watch, "Watch (opened)", RequestKind.Read),
        new(Other, "other calls", RequestKind.Read),
        new(CountingProxy.Messages, "gRPC messages", RequestKind.NotARequest),
        new(CountingProxy.Pings, "HTTP/2 pings", RequestKind.NotARequest),
        new(CountingProxy.Connections, "connections opened", RequestKind.NotARequest),
    ];

    private readonly Uri _endpoint;
    private readonly ConcurrentDictionary<(string Lease, string Identity), CountingProxy> _proxies = new();

    private EtcdBackend(string directory, Uri endpoint)
        : base(directory) => _endpoint = endpoint;

    public override string Section => "etcd";

    public override string Title => "etcd backend, on a real etcd";

    public override string Name => "etcd";

    public override string Description => Report.F(
        $"a real etcd {Version} (Debian `etcd-server`), one member on {_endpoint.Authority}, default heartbeat and election timeout, data in a temporary directory; started and stopped by the harness");

    public override IReadOnlyList<RequestColumn> RequestColumns => Columns;

    public override string CountSource =>
        "a counting TCP proxy in front of etcd, one per replica, which reads the gRPC method of each new HTTP/2 stream and counts the gRPC messages, pings and connections the daemon sends (a watch counts once, when its stream opens)";

    /// <summary>Starts etcd in <paramref name="scratch"/> and waits until it has a leader.</summary>
    public static async Task<EtcdBackend> StartAsync(string scratch)
    {
        var client = $"http://127.0.0.1:{Harness.FreePort()}";
        var peer = $"http://127.0.0.1:{Harness.FreePort()}";
        return await StartedAsync(new EtcdBackend(System.IO.Directory.CreateDirectory(Path.Combine(scratch, "etcd")).FullName, new Uri(client)), async etcd =>
        {
            await etcd.ReadVersionAsync("etcd");
            var log = Path.Combine(etcd.Directory, "etcd.log");
            await etcd.LaunchAsync(
                "etcd",
                [
                    "--name", "bench", "--data-dir", Path.Combine(etcd.Directory, "data"),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", $"bench={peer}",
                    "--logger", "zap", "--log-outputs", log,
                ],
                log,
                // /health says true once the member has a leader and answers a read through raft.
                async () => (await Harness.Http.GetStringAsync(new Uri(etcd._endpoint, "/health"))).Contains("\"true\"", StringComparison.Ordinal));
        });
    }

    public override string[] DaemonArgs(string lease, string identity, bool counted)
    {
        var endpoint = counted
            ? _proxies.GetOrAdd((lease, identity), _ => new CountingProxy(new IPEndPoint(IPAddress.Loopback, _endpoint.Port))).Address
            : _endpoint;
        return ["--backend", "etcd", "--etcd-endpoints", endpoint.GetLeftPart(UriPartial.Authority), "--namespace", "bench", "--lease-name", lease];
    }

    public override Task<Dictionary<string, long>?> ServerCountsAsync(string lease, string identity)
    {
        if (!_proxies.TryGetValue((lease, identity), out var proxy))
        {
            return Task.FromResult<Dictionary<string, long>?>(null);
        }

        var seen = proxy.Snapshot();
        var counts = Columns.ToDictionary(c => c.Key, c => seen.GetValueOrDefault(c.Key));
        counts[Other] = seen.Where(p => !p.Key.StartsWith('(') && !counts.ContainsKey(p.Key)).Sum(p => p.Value)
            + seen.GetValueOrDefault(CountingProxy.Unreadable);
        return Task.FromResult<Dictionary<string, long>?>(counts);
    }

    /// <summary>etcd's own <c>grpc_server_started_total</c> by method ("etcdserverpb.KV/Txn"), every client together.</summary>
    public override async Task<Dictionary<string, long>?> ServerTotalsAsync()
    {
        var text = await Harness.Http.GetStringAsync(new Uri(_endpoint, "/metrics"));
        var totals = new Dictionary<string, long>();
        foreach (Match match in StartedMetric().Matches(text))
        {
            var key = $"{match.Groups["service"].Value}/{match.Groups["method"].Value}";
            totals[key] = totals.GetValueOrDefault(key) + (long)double.Parse(match.Groups["value"].Value, CultureInfo.InvariantCulture);
        }

        return totals;
    }

    public override async ValueTask DisposeAsync()
    {
        foreach (var proxy in _proxies.Values)
        {
            await proxy.DisposeAsync();
        }

        await base.DisposeAsync();
    }

    [GeneratedRegex(@"^grpc_server_started_total\{(?=[^}]*grpc_method=""(?<method>[^""]+)"")(?=[^}]*grpc_service=""(?<service>[^""]+)"")[^}]*\} (?<value>[0-9.e+]+)", RegexOptions.Multiline)]
    private static partial Regex StartedMetric();
}
