using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LeaderSidecar.Configuration;
using LeaderSidecar.Stores;
using LeaderSidecar.Tests.Deploy;
using LeaderSidecar.Tests.EndToEnd;

namespace LeaderSidecar.Tests.Stores;

/// <summary>
/// The wiring of the stores, and a build with only some of them (<c>-p:LeaderSidecarStores=file</c>):
/// the build property sets the stores' feature switches, and a binary whose switches leave a store
/// out says so in one line (exit 2) when that store is asked for.
/// </summary>
public sealed partial class StoreKindsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public void Every_line_names_its_store_and_the_build_property_knows_every_store()
    {
        Assert.All(StoreKinds.Wiring, line => Assert.Equal(line.Name, line.Kind?.Name));
        Assert.Equal(StoreKinds.All, StoreKinds.Wiring.Select(line => line.Kind));

        var all = AllStoresProperty().Match(Repository.Read("src/Sidecar/Sidecar.csproj"));
        Assert.True(all.Success, "no <LeaderSidecarAllStores> in Sidecar.csproj");
        Assert.Equal(StoreKinds.Wiring.Select(line => line.Name), all.Groups[1].Value.Split(';'));
    }

    [Fact]
    public void A_store_left_out_or_one_of_its_flags_is_named_with_the_stores_the_build_has()
    {
        StoreLine[] lines = [.. StoreKinds.Wiring.Select(line => line.Name is "file" or "kubernetes" ? line : line with { Kind = null })];

        const string noEtcd = "this build has no etcd store; stores in this build: file, kubernetes";
        Assert.Equal(noEtcd, StoreKinds.LeftOut(lines, "etcd"));
        Assert.Equal(noEtcd, StoreKinds.LeftOut(lines, "etcd-endpoints"));
        Assert.StartsWith("this build has no redis store;", StoreKinds.LeftOut(lines, "redis-password-file"), StringComparison.Ordinal);
        Assert.Null(StoreKinds.LeftOut(lines, "file"));
        Assert.Null(StoreKinds.LeftOut(lines, "etcdx"));
        Assert.Null(StoreKinds.LeftOut(lines, "lease-name"));
        Assert.Null(StoreKinds.LeftOut(StoreKinds.Wiring, "etcd-endpoints"));
    }

    [Fact]
    public void A_flag_of_a_store_left_out_that_is_not_named_after_it_names_its_store()
    {
        StoreLine[] etcdOnly = [.. StoreKinds.Wiring.Select(line => line.Name == "etcd" ? line : line with { Kind = null })];
        Assert.Equal("this build has no file store; stores in this build: etcd", StoreKinds.LeftOut(etcdOnly, "lease-dir"));
        foreach (var flag in new[] { "kubeconfig", "leader-service", "events" })
        {
            Assert.Equal("this build has no kubernetes store; stores in this build: etcd", StoreKinds.LeftOut(etcdOnly, flag));
        }

        // A flag some store in the build has is that store's, whoever else might name it.
        StoreLine[] fileOnly = [.. StoreKinds.Wiring.Select(line => line.Name == "file" ? line : line with { Kind = null })];
        StoreLine[] clash = [.. fileOnly.Select(line => line.Name == "kubernetes" ? line with { FlagsNotNamedAfterIt = ["lease-dir"] } : line)];
        Assert.Null(StoreKinds.LeftOut(clash, "lease-dir"));
        Assert.Equal("this build has no kubernetes store; stores in this build: file", StoreKinds.LeftOut(fileOnly, "kubeconfig"));
    }

    [Fact]
    public void Every_flag_of_a_store_is_named_after_it_or_listed_on_its_line()
    {
        Assert.All(StoreKinds.Wiring, line =>
        {
            var flags = line.Kind!.Flags.Select(flag => flag.Name).ToList();
            Assert.Equal(
                flags.Where(flag => flag != line.Name && !flag.StartsWith(line.Name + "-", StringComparison.Ordinal)).Order(),
                line.FlagsNotNamedAfterIt.Order());
        });
    }

    [Fact]
    public void The_help_of_backend_describes_auto_with_the_stores_of_the_build()
    {
        StoreLine[] Only(params string[] names) => [.. StoreKinds.Wiring.Select(line => names.Contains(line.Name) ? line : line with { Kind = null })];

        Assert.Equal(
            "Lease store. auto picks the store whose flags are given (such as --etcd-endpoints), else kubernetes in a pod ($KUBERNETES_SERVICE_HOST set) or with $KUBECONFIG, else file.",
            StoreKinds.BackendHelpFor(StoreKinds.Wiring));
        Assert.Equal("Lease store; this build has only kubernetes, which auto picks.", StoreKinds.BackendHelpFor(Only("kubernetes")));
        Assert.Equal(
            "Lease store; this build has only file, which auto picks, except in a pod ($KUBERNETES_SERVICE_HOST set): there name the store with --backend.",
            StoreKinds.BackendHelpFor(Only("file")));
        Assert.Equal(
            "Lease store. auto picks the store whose flags are given (such as --kubeconfig), else kubernetes in a pod ($KUBERNETES_SERVICE_HOST set) or with $KUBECONFIG, else file.",
            StoreKinds.BackendHelpFor(Only("file", "kubernetes")));
        Assert.Equal(
            "Lease store. auto picks the store whose flags are given (such as --postgres), else file; in a pod ($KUBERNETES_SERVICE_HOST set) name the store with --backend.",
            StoreKinds.BackendHelpFor(Only("file", "postgres")));
        Assert.Equal(
            "Lease store. auto picks the store whose flags are given (such as --redis), else kubernetes.",
            StoreKinds.BackendHelpFor(Only("kubernetes", "redis")));
    }

    [Fact]
    public void The_first_flag_of_every_store_but_the_fallback_asks_for_it_under_auto()
    {
        // The help of --backend gives a store's first flag as the example of a flag that picks it.
        var values = new Dictionary<string, string>
        {
            ["kubernetes"] = "/etc/kubeconfig",
            ["etcd"] = "http://127.0.0.1:2379",
            ["postgres"] = "postgresql://app@db.example/leases",
            ["mysql"] = "mysql://app@db.example/leases",
            ["redis"] = "redis://cache.example",
        };
        Assert.All(StoreKinds.All.Skip(1), kind =>
        {
            var options = Assert.IsType<ParseResult.Run>(CommandLine.Parse(["--lease-name", "a", $"--{kind.Flags[0].Name}", values[kind.Name]], _ => null)).Options;
            Assert.Same(kind, StoreKinds.Select(options, _ => null));
        });
    }

    [Fact]
    public async Task LeaderSidecarStores_sets_the_switch_of_every_store_left_out_and_rejects_an_unknown_store()
    {
        var (code, output) = await RunAsync("dotnet", "msbuild", Repository.PathOf("src/Sidecar"), "-getItem:RuntimeHostConfigurationOption", "-p:LeaderSidecarStores=file+kubernetes");
        Assert.True(code == 0, output);
        var options = JsonNode.Parse(output)!["Items"]!["RuntimeHostConfigurationOption"]!.AsArray()
            .Where(item => ((string?)item!["Identity"])!.StartsWith("LeaderSidecar.Stores.", StringComparison.Ordinal))
            .Select(item => ((string?)item!["Identity"], (string?)item!["Value"], (string?)item!["Trim"]));
        Assert.Equal(
            [("LeaderSidecar.Stores.etcd", "false", "true"), ("LeaderSidecar.Stores.postgres", "false", "true"), ("LeaderSidecar.Stores.mysql", "false", "true"), ("LeaderSidecar.Stores.redis", "false", "true")],
            options);

        (code, output) = await RunAsync("dotnet", "msbuild", Repository.PathOf("src/Sidecar"), "-getItem:RuntimeHostConfigurationOption");
        Assert.True(code == 0, output);
        Assert.DoesNotContain("LeaderSidecar.Stores.", output, StringComparison.Ordinal);

        (code, output) = await RunAsync("dotnet", "msbuild", Repository.PathOf("src/Sidecar"), "-t:CheckLeaderSidecarStores", "-p:LeaderSidecarStores=file+etdc", "-nologo");
        Assert.NotEqual(0, code);
        Assert.Contains("LeaderSidecarStores=file+etdc: name stores from file, kubernetes, etcd, postgres, mysql, redis joined by +, or all", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_binary_without_a_store_says_so_in_one_line_when_it_is_asked_for()
    {
        var binary = FileOnlyCopyOfTheJitBuild();

        foreach (var (args, environment, from) in new (string[], Dictionary<string, string>, string)[]
        {
            (["--backend", "etcd"], [], "--backend"),
            (["--etcd-endpoints", "http://127.0.0.1:2379"], [], "--etcd-endpoints"),
            ([], new() { ["LEADER_SIDECAR_ETCD_ENDPOINTS"] = "http://127.0.0.1:2379" }, "$LEADER_SIDECAR_ETCD_ENDPOINTS"),
            ([], new() { ["LEADER_SIDECAR_BACKEND"] = "etcd" }, "$LEADER_SIDECAR_BACKEND"),
        })
        {
            var (code, output) = await RunAsync(binary, environment, ["--lease-name", "x", "--lease-dir", _dir.Path, .. args]);
            Assert.Equal(2, code);
            Assert.Equal($"leader-sidecar: this build has no etcd store; stores in this build: file (from {from})\n", output);
        }

        // A flag not named after its store names the store too, rather than being unknown.
        foreach (var (args, environment, from) in new (string[], Dictionary<string, string>, string)[]
        {
            (["--kubeconfig", "/etc/kubeconfig"], [], "--kubeconfig"),
            (["--events"], [], "--events"),
            ([], new() { ["LEADER_SIDECAR_LEADER_SERVICE"] = "app" }, "$LEADER_SIDECAR_LEADER_SERVICE"),
        })
        {
            var (code, output) = await RunAsync(binary, environment, ["--lease-name", "x", "--lease-dir", _dir.Path, .. args]);
            Assert.Equal(2, code);
            Assert.Equal($"leader-sidecar: this build has no kubernetes store; stores in this build: file (from {from})\n", output);
        }

        // In a pod, --backend auto would have picked the Kubernetes store this build lacks.
        var (podCode, pod) = await RunAsync(binary, new() { ["KUBERNETES_SERVICE_HOST"] = "10.0.0.1" }, ["--lease-name", "x", "--lease-dir", _dir.Path]);
        Assert.Equal(2, podCode);
        Assert.Equal("leader-sidecar: in a pod --backend auto picks the kubernetes store, which this build does not have (stores in this build: file): name the store with --backend\n", pod);

        var (helpCode, help) = await RunAsync(binary, [], ["--help"]);
        Assert.Equal(0, helpCode);
        Assert.Contains("--backend auto|file\n      Lease store; this build has only file, which auto picks, except in a pod", help, StringComparison.Ordinal);
        Assert.DoesNotContain("\n  --etcd-endpoints ", help, StringComparison.Ordinal);
        Assert.DoesNotContain("\n  --kubeconfig ", help, StringComparison.Ordinal);
        Assert.DoesNotContain("(such as --", help, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// The JIT build copied, with the switches a <c>-p:LeaderSidecarStores=file</c> build writes into
    /// its runtimeconfig.json (which the JIT runtime reads as the AOT compiler reads them).
    /// </summary>
    private string FileOnlyCopyOfTheJitBuild()
    {
        var built = Path.GetDirectoryName(DaemonProcess.BinaryPath)!;
        Assert.True(File.Exists(Path.Combine(built, "leader-sidecar.runtimeconfig.json")), $"{built} is not the JIT build (LEADER_SIDECAR_BIN set?)");
        var copy = _dir.File("bin");
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.EnumerateFiles(built))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }

        var config = Path.Combine(copy, "leader-sidecar.runtimeconfig.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!;
        var properties = json["runtimeOptions"]!["configProperties"]!.AsObject();
        foreach (var store in StoreKinds.Wiring.Where(line => line.Name != "file"))
        {
            properties[$"LeaderSidecar.Stores.{store.Name}"] = false;
        }

        File.WriteAllText(config, json.ToJsonString());
        return Path.Combine(copy, "leader-sidecar");
    }

    private static Task<(int Code, string Output)> RunAsync(string file, params string[] args) => RunAsync(file, [], args);

    /// <summary>Runs a process to its end: its exit code and its stdout and stderr, one after the other.</summary>
    private static async Task<(int Code, string Output)> RunAsync(string file, Dictionary<string, string> environment, string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repository.Root };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        finally
        {
            // A daemon that started instead of refusing to: not left behind.
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex("<LeaderSidecarAllStores>([^<]*)</LeaderSidecarAllStores>")]
    private static partial Regex AllStoresProperty();
}
