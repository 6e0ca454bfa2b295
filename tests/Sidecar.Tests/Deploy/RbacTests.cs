using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Testing.LeaseApi;
using LeaderSidecar.Testing.LeaseApi.Auth;
using LeaderSidecar.Testing.LeaseApi.Storage;
using LeaderSidecar.Tests.Deploy;

// In the EndToEnd namespace on purpose: scripts/test runs these again against the native AOT binary.
namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The Role in deploy/base/role.yaml, loaded into the Lease API test server (which enforces RBAC
/// with resourceNames as kube-apiserver does), for real daemon processes: it is enough for all the
/// sidecar does, and without any one of its verbs something observable breaks.
/// </summary>
public sealed partial class RbacTests : IAsyncLifetime
{
    private const string Namespace = "demo";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    // Quick renews and retries, but a long lease duration: a takeover within seconds of a SIGTERM
    // comes from the release, never from expiry. The renew deadline stays at its default: requests
    // time out after half of it, and a new process's first TLS request on a busy machine is slow.
    private static readonly string[] Timing = ["--lease-duration", "15s", "--renew-deadline", "10s", "--retry-period", "500ms"];
    private static readonly TimeSpan WellBeforeExpiry = TimeSpan.FromSeconds(10);
    private static readonly HttpClient Http = new() { Timeout = Deadline };
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private LeaseApiServer _server = null!;

    /// <summary>The lease the Role names (the sidecar's, as ManifestTests checks).</summary>
    private static string LeaseName => Assert.Single(DeployedRole().Where(r => r.ResourceNames is { Count: > 0 }).SelectMany(r => r.ResourceNames!).Distinct());

    public async Task InitializeAsync()
    {
        _server = await LeaseApiServer.StartAsync(new LeaseApiServerOptions { UseTls = true });
    }

    [Fact]
    public async Task With_the_deployed_role_a_daemon_creates_leads_and_renews_and_a_watching_follower_takes_over_on_release()
    {
        var a = await StartAsync("a", DeployedRole());
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        Assert.Equal("a", _server.Store.Get(Namespace, LeaseName)?.Spec.HolderIdentity);
        Assert.Equal(1, _server.Requests[ApiVerb.Create, "token-a"]);

        var b = await StartAsync("b", DeployedRole());
        await Poll.UntilAsync(
            async () => await b.RoleAsync() == "FOLLOWER" && _server.Requests[ApiVerb.Watch, "token-b"] > 0,
            Deadline,
            "b follows and watches");

        // a keeps renewing; b learns of it from the watch and reads nothing.
        var getsOfB = _server.Requests[ApiVerb.Get, "token-b"];
        var revision = _server.Store.Get(Namespace, LeaseName)!.Revision;
        await Poll.UntilAsync(() => Task.FromResult(_server.Store.Get(Namespace, LeaseName)!.Revision >= revision + 4), Deadline, "four more renews");
        Assert.Equal("a", _server.Store.Get(Namespace, LeaseName)!.Spec.HolderIdentity);
        Assert.Equal("LEADER", await a.RoleAsync());
        Assert.Equal(getsOfB, _server.Requests[ApiVerb.Get, "token-b"]);

        var stopped = Stopwatch.StartNew();
        a.Terminate();
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));
        await Poll.UntilAsync(async () => await b.RoleAsync() == "LEADER", Deadline, "b takes over");
        Assert.True(stopped.Elapsed < WellBeforeExpiry, $"b took {stopped.Elapsed.TotalSeconds:0.0} s: it waited for expiry, so the release failed");

        var lease = _server.Store.Get(Namespace, LeaseName)!;
        Assert.Equal("b", lease.Spec.HolderIdentity);
        Assert.Equal(1, lease.Spec.LeaseTransitions);
        Assert.Equal(getsOfB, _server.Requests[ApiVerb.Get, "token-b"]);
        Assert.DoesNotContain("forbidden", a.Output + b.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [MemberData(nameof(ExampleDeployment.Variants), MemberType = typeof(ExampleDeployment))]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task The_sidecar_as_the_manifest_configures_it_leads_under_the_deployed_role_and_passes_its_own_probes(string variant)
    {
        // The manifest's args and environment, with the pod's paths and addresses moved to this machine.
        var example = ExampleDeployment.Load(variant);
        var shared = (string)example.Sidecar["volumeMounts"]!.AsArray().Single(m => (string?)m!["mountPath"] != KubernetesConnection.ServiceAccountDirectory)!["mountPath"]!;
        var probeAddress = example.SidecarOptions.ProbeAddress!.ToString();
        var args = example.SidecarArgs.Select(a => a.Replace(shared, _dir.Path, StringComparison.Ordinal).Replace(probeAddress, "127.0.0.1:0", StringComparison.Ordinal)).ToList();
        // POD_IP is read only with --leader-service, which these manifests leave to an optional component.
        foreach (var (name, value) in example.SidecarEnvironment.Where(e => e.Key != "POD_IP"))
        {
            // The test harness starts daemons with a clean environment; the same settings as flags.
            args.Add(name switch
            {
                "POD_NAME" => $"--identity={value}",
                "POD_NAMESPACE" => $"--namespace={Namespace}",
                _ when name.StartsWith("LEADER_SIDECAR_", StringComparison.Ordinal) => $"--{name["LEADER_SIDECAR_".Length..].ToLowerInvariant().Replace('_', '-')}={value.Replace(shared, _dir.Path, StringComparison.Ordinal)}",
                _ => throw new Xunit.Sdk.XunitException($"{variant}: sidecar variable {name} has no flag twin"),
            });
        }

        args.AddRange(["--kubeconfig", Kubeconfig("pod", DeployedRole())]);
        var sidecar = await DaemonProcess.StartAsync([.. args]);
        _daemons.Add(sidecar);
        var probe = await sidecar.ProbeAddress.WaitAsync(Deadline);

        string ProbePath(string kind) => (string)example.Sidecar[kind]!["httpGet"]!["path"]!;
        await Poll.UntilAsync(async () => (await Http.GetAsync(new Uri(probe, ProbePath("readinessProbe")))).IsSuccessStatusCode, Deadline, "ready");
        Assert.True((await Http.GetAsync(new Uri(probe, ProbePath("livenessProbe")))).IsSuccessStatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await Http.GetAsync(new Uri(probe, "/leader"))).StatusCode);
        await Poll.UntilAsync(async () => await sidecar.RoleAsync() == "LEADER", Deadline, "the only replica leads");

        var options = example.SidecarOptions;
        var leaderFile = options.LeaderFile!.Replace(shared, _dir.Path, StringComparison.Ordinal);
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(leaderFile)), Deadline, "the leader file in the shared directory");
        var socket = options.GrpcAddress.UnixSocketPath!.Replace(shared, _dir.Path, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));

        // The kubelet's SIGTERM: released well within the pod's grace period.
        var stopped = Stopwatch.StartNew();
        sidecar.Terminate();
        Assert.Equal(0, await sidecar.WaitForExitAsync(Deadline));
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds((long)example.Pod["terminationGracePeriodSeconds"]!), $"shutdown took {stopped.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal("", _server.Store.Get(Namespace, LeaseName)!.Spec.HolderIdentity);
        Assert.DoesNotContain("forbidden", sidecar.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task The_deployed_role_allows_no_other_lease()
    {
        var kubeconfig = Kubeconfig("a", DeployedRole());

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync(
            "--backend", "kubernetes", "--lease-name", "another-lease", "--namespace", Namespace, "--kubeconfig", kubeconfig,
            "--identity", "a", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        Assert.Contains("cannot get resource \"leases\"", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_get_the_daemon_stops_at_start_with_exit_code_2()
    {
        var kubeconfig = Kubeconfig("a", DeployedRole(without: "get"));

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync(
            "--backend", "kubernetes", "--lease-name", LeaseName, "--namespace", Namespace, "--kubeconfig", kubeconfig,
            "--identity", "a", "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("cannot get resource \"leases\"", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_create_the_daemon_never_leads_while_the_lease_is_missing()
    {
        var a = await StartAsync("a", DeployedRole(without: "create"));

        await Poll.UntilAsync(async () => await MetricAsync(a, "leader_sidecar_lease_requests_total", ("verb", "create"), ("result", "forbidden")) >= 2, Deadline, "two forbidden creates");
        Assert.NotEqual("LEADER", await a.RoleAsync());
        Assert.Equal(0, await MetricAsync(a, "leader_sidecar_role_changes_total", ("role", "leader")));
        Assert.Null(_server.Store.Get(Namespace, LeaseName));

        // create is needed for nothing else: once the Lease exists (free), the daemon takes it.
        _server.Store.Put(FreeLease());
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads once the lease exists");
    }

    [Fact]
    public async Task Without_update_a_daemon_cannot_renew_the_lease_it_created()
    {
        var a = await StartAsync("a", DeployedRole(without: "update"));

        // Creating is allowed, so it leads; every write after that is forbidden, so it steps down
        // (at the latest when the renew deadline passes) and cannot take its own lease back.
        await Poll.UntilAsync(
            async () => await MetricAsync(a, "leader_sidecar_role_changes_total", ("role", "leader")) >= 1
                && await MetricAsync(a, "leader_sidecar_lease_requests_total", ("verb", "update"), ("result", "forbidden")) >= 2
                && await a.RoleAsync() != "LEADER",
            Deadline,
            "a acquired by creating, then lost the lease to forbidden updates");
        var lease = _server.Store.Get(Namespace, LeaseName)!;
        Assert.Equal("a", lease.Spec.HolderIdentity);
        Assert.Equal(lease.Spec.AcquireTime, lease.Spec.RenewTime);
        Assert.Equal(1, _server.Requests[ApiVerb.Create, "token-a"]);
    }

    [Fact]
    public async Task Without_update_a_daemon_cannot_take_a_free_lease()
    {
        _server.Store.Put(FreeLease());
        var a = await StartAsync("a", DeployedRole(without: "update"));

        await Poll.UntilAsync(async () => await MetricAsync(a, "leader_sidecar_lease_requests_total", ("verb", "update"), ("result", "forbidden")) >= 2, Deadline, "two forbidden updates");
        Assert.NotEqual("LEADER", await a.RoleAsync());
        Assert.Equal(0, await MetricAsync(a, "leader_sidecar_role_changes_total", ("role", "leader")));
        Assert.Equal("", _server.Store.Get(Namespace, LeaseName)!.Spec.HolderIdentity);
    }

    [Theory]
    [InlineData("list")]
    [InlineData("watch")]
    public async Task Without_list_or_watch_the_watch_is_forbidden_logged_and_counted(string verb)
    {
        var a = await StartAsync("a", DeployedRole());
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b", DeployedRole(without: verb));

        await Poll.UntilAsync(
            async () => await b.RoleAsync() == "FOLLOWER"
                && await MetricAsync(b, "leader_sidecar_lease_requests_total", ("verb", "watch"), ("result", "forbidden")) >= 1
                && WatchFailedForbidden().IsMatch(b.Output),
            Deadline,
            "b follows, and its watch is forbidden, counted and logged (event 10)");
        Assert.DoesNotContain("forbidden", a.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData("list")]
    [InlineData("watch")]
    public async Task Without_list_or_watch_a_follower_polls_instead_and_still_takes_over_on_release(string verb)
    {
        var a = await StartAsync("a", DeployedRole());
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b", DeployedRole(without: verb));
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");

        // Without a watch, b reads the lease every retry period.
        var getsOfB = _server.Requests[ApiVerb.Get, "token-b"];
        await Poll.UntilAsync(() => Task.FromResult(_server.Requests[ApiVerb.Get, "token-b"] >= getsOfB + 3), Deadline, "b polls");

        var stopped = Stopwatch.StartNew();
        a.Terminate();
        Assert.Equal(0, await a.WaitForExitAsync(Deadline));
        await Poll.UntilAsync(async () => await b.RoleAsync() == "LEADER", Deadline, "b takes over");
        Assert.True(stopped.Elapsed < WellBeforeExpiry, $"b took {stopped.Elapsed.TotalSeconds:0.0} s: it waited for expiry instead of polling");
    }

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        await _server.DisposeAsync();
        _dir.Dispose();
    }

    /// <summary>
    /// The lease rules of deploy/base/role.yaml for <see cref="Namespace"/> (a Role applies in its
    /// own namespace), optionally with one verb removed from every rule.
    /// </summary>
    private static List<LeaseRule> DeployedRole(string? without = null)
    {
        var role = Yaml.LoadSingle(Repository.PathOf("deploy/base/role.yaml"));
        Assert.Equal("Role", (string?)role["kind"]);
        var rules = new List<LeaseRule>();
        var removed = false;
        foreach (var rule in role["rules"]!.AsArray())
        {
            var groups = ExampleDeployment.Strings(rule!["apiGroups"]);
            var resources = ExampleDeployment.Strings(rule["resources"]);
            if (!groups.Any(g => g is "coordination.k8s.io" or "*") || !resources.Any(r => r is "leases" or "*"))
            {
                continue;
            }

            var verbs = ExampleDeployment.Strings(rule["verbs"]);
            removed |= verbs.Contains(without);
            verbs = [.. verbs.Where(v => v != without)];
            if (verbs.Length > 0)
            {
                var names = rule["resourceNames"] is { } n ? ExampleDeployment.Strings(n) : null;
                rules.Add(new LeaseRule(verbs, names, Namespace));
            }
        }

        Assert.True(without is null || removed, $"the Role has no \"{without}\" to remove");
        return rules;
    }

    private static Lease FreeLease() => Lease.Create(Namespace, LeaseName, new LeaseSpec
    {
        HolderIdentity = "",
        LeaseDurationSeconds = 1,
        AcquireTime = DateTimeOffset.UtcNow,
        RenewTime = DateTimeOffset.UtcNow,
        LeaseTransitions = 0,
    });

    /// <summary>The sum of a metric's samples whose labels include <paramref name="labels"/>.</summary>
    private static async Task<double> MetricAsync(DaemonProcess daemon, string name, params (string Label, string Value)[] labels)
    {
        var text = await Http.GetStringAsync(new Uri(daemon.BaseAddress, "/metrics"));
        var sum = 0.0;
        foreach (Match sample in Sample().Matches(text))
        {
            var sampleLabels = Label().Matches(sample.Groups["labels"].Value).ToDictionary(m => m.Groups["k"].Value, m => m.Groups["v"].Value);
            if (sample.Groups["name"].Value == name && labels.All(l => sampleLabels.GetValueOrDefault(l.Label) == l.Value))
            {
                sum += double.Parse(sample.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }

    private string Kubeconfig(string identity, IReadOnlyList<LeaseRule> rules)
    {
        var token = $"token-{identity}";
        _server.Tokens.Set(token, new ApiUser($"system:serviceaccount:{Namespace}:{identity}", rules));
        var kubeconfig = _dir.File($"{identity}.kubeconfig");
        _server.WriteKubeconfig(kubeconfig, token, Namespace);
        return kubeconfig;
    }

    private async Task<DaemonProcess> StartAsync(string identity, IReadOnlyList<LeaseRule> rules)
    {
        var kubeconfig = Kubeconfig(identity, rules);
        var daemon = await DaemonProcess.StartAsync(
            ["--backend", "kubernetes", "--lease-name", LeaseName, "--namespace", Namespace, "--kubeconfig", kubeconfig, "--identity", identity, .. Timing]);
        _daemons.Add(daemon);
        return daemon;
    }

    [GeneratedRegex(@"(?m)^(?<name>[a-z_:][a-z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)$")]
    private static partial Regex Sample();

    [GeneratedRegex(@"(?<k>[a-z_][a-z0-9_]*)=""(?<v>[^""]*)""")]
    private static partial Regex Label();

    [GeneratedRegex(@"""EventId"":10,.*Forbidden")]
    private static partial Regex WatchFailedForbidden();
}
