using System.Diagnostics;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Leadership.V1;
using LeaderSidecar.Tests.Surfaces;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The apps under <c>examples/</c>, each attached to one of three real daemons that compete for one
/// lease, through three kinds of hand-over: the leader is terminated (its app is told, and with
/// gRPC confirms the drain), the next one resigns (its app is told while the sidecar stays up),
/// the next one is killed (its app's connection breaks with no last word). Only the leader's app
/// may work at each step, and an app never works after it stood by until it leads again. A missing
/// runtime or package fails the test, never skips it.
/// </summary>
public sealed partial class ExamplesTests : IAsyncLifetime
{
    private const string ControlToken = "examples-control-token";
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private readonly Dictionary<DaemonProcess, ExampleProcess> _examples = [];

    [Fact]
    public Task The_shell_example_works_only_while_its_sidecar_leads() => HandOversAsync(Shell, grpc: false);

    [Fact]
    public Task The_python_example_works_only_while_its_sidecar_leads() => HandOversAsync(Python(), grpc: true);

    [Fact]
    public Task The_node_example_works_only_while_its_sidecar_leads() => HandOversAsync(Node(), grpc: true);

    /// <summary>
    /// examples/exec: a program that knows nothing of leader election, run by each sidecar in exec
    /// mode. Its lines are in its sidecar's output. Through the same three hand-overs, only the
    /// leader's copy works, with its term, and the old leader's copy is gone before the next
    /// leader leads (or, after a crash, soon after).
    /// </summary>
    [Fact]
    public async Task The_exec_example_runs_only_under_the_leading_sidecar()
    {
        File.WriteAllText(TokenFile, ControlToken + "\n");
        var all = new List<DaemonProcess>();
        foreach (var id in new[] { "a", "b", "c" })
        {
            all.Add(await StartDaemonAsync(id, "--control-token-file", TokenFile, "--exec-grace", "1s", "--", InRepository("examples/exec/worker.sh")));
        }

        var first = await DaemonProcess.SingleLeaderAsync(all);
        var firstWorker = await WorkerWorksAsync(first, term: 0);

        first.Terminate();
        var second = await DaemonProcess.SingleLeaderAsync([.. all.Where(d => d != first)]);
        Assert.True(ProcessStat.Gone(firstWorker), "the old leader's worker still runs");
        Assert.Equal(0, await first.WaitForExitAsync(Deadline));
        var secondWorker = await WorkerWorksAsync(second, term: 1);

        await ResignAsync(second, holdOff: TimeSpan.FromSeconds(2));
        var third = all.Single(d => d != first && d != second);
        Assert.Same(third, await DaemonProcess.SingleLeaderAsync([second, third]));
        Assert.True(ProcessStat.Gone(secondWorker), "the resigned leader's worker still runs");
        var thirdWorker = await WorkerWorksAsync(third, term: 2);

        await third.KillAsync();
        await Poll.UntilAsync(() => Task.FromResult(ProcessStat.Gone(thirdWorker)), Deadline, "the killed sidecar's worker to die with it");
        await DaemonProcess.SingleLeaderAsync([second]);
        await WorkerWorksAsync(second, term: 3);

        Assert.Equal(["0"], WorkTerms(first));
        Assert.Equal(["1", "3"], WorkTerms(second));
        Assert.Equal(["2"], WorkTerms(third));
    }

    /// <summary>Waits until the worker under <paramref name="leader"/> has worked twice under <paramref name="term"/>; returns its pid.</summary>
    private static async Task<int> WorkerWorksAsync(DaemonProcess leader, long term)
    {
        List<Match> work = [];
        await Poll.UntilAsync(
            () =>
            {
                work = [.. leader.OutputLines.Select(l => WorkLine().Match(l)).Where(m => m.Success && m.Groups["term"].Value == $"{term}")];
                return Task.FromResult(work.Count >= 2);
            },
            Deadline,
            $"the worker to work under term {term}\n{leader.Output}");
        return int.Parse(work[^1].Groups["pid"].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    private static List<string> WorkTerms(DaemonProcess daemon) =>
        [.. daemon.OutputLines.Select(l => WorkLine().Match(l)).Where(m => m.Success).Select(m => m.Groups["term"].Value).Distinct()];

    [GeneratedRegex(@"^WORK term=(?<term>\d+) pid=(?<pid>\d+)$")]
    private static partial Regex WorkLine();

    /// <param name="start">Starts the example for a daemon, under a name.</param>
    /// <param name="grpc">The example follows Watch and confirms the drain; a shell loop cannot.</param>
    private async Task HandOversAsync(Func<DaemonProcess, string, ExampleProcess> start, bool grpc)
    {
        // b serves gRPC on a unix socket, so the gRPC examples run with both kinds of address; over
        // TCP they present the control token to confirm the drain, and so does the test's Resign.
        File.WriteAllText(TokenFile, ControlToken + "\n");
        var identities = new Dictionary<DaemonProcess, string>();
        foreach (var (id, grpcAddress) in new[] { ("a", "127.0.0.1:0"), ("b", $"unix:{_dir.File("b.sock")}"), ("c", "127.0.0.1:0") })
        {
            identities[await StartDaemonAsync(id, "--grpc-address", grpcAddress, "--control-token-file", TokenFile)] = id;
        }

        var first = await DaemonProcess.SingleLeaderAsync([.. identities.Keys]);
        foreach (var (daemon, id) in identities)
        {
            _examples[daemon] = start(daemon, $"example on {id}");
        }

        var rest = identities.Keys.Where(d => d != first).ToList();
        foreach (var daemon in rest)
        {
            await _examples[daemon].WaitForAsync(l => NeverWorked(daemon) && l.Contains($"STANDBY role=FOLLOWER holder={identities[first]}"), Deadline, "a follower's example stands by");
        }

        await WorksAsync(first, term: 0, rest);

        // A rolling update: the leader's pod is terminated.
        first.Terminate();
        var second = await DaemonProcess.SingleLeaderAsync(rest);
        var third = rest.Single(d => d != second);
        await WorksAsync(second, term: 1, [third]);
        await StandsByAsync(first, term: 0);
        Assert.Equal(0, await first.WaitForExitAsync(Deadline));
        if (grpc)
        {
            Assert.Contains("the app confirmed it stopped", first.Output, StringComparison.Ordinal);
        }

        // A step-down while the sidecar stays up: only the status tells the app.
        await ResignAsync(second, holdOff: TimeSpan.FromSeconds(2));
        Assert.Same(third, await DaemonProcess.SingleLeaderAsync([second, third]));
        await _examples[second].WaitForAsync(l => l.SkipWhile(x => x != "LEADING term=1").Contains($"STANDBY role=FOLLOWER holder={identities[third]}"), Deadline, "the second example stands by");
        await WorksAsync(third, term: 2, []);

        // A crash: the leader dies without a word, so its app's stream or requests fail. Once the
        // lease expires, the second (its hold-off over) leads again.
        await third.KillAsync();
        await StandsByAsync(third, term: 2);
        await DaemonProcess.SingleLeaderAsync([second]);
        await WorksAsync(second, term: 3, []);

        // Every example exits cleanly on SIGTERM; by then every line it printed has been read.
        foreach (var example in _examples.Values)
        {
            Assert.Equal(0, await example.TerminateAsync(Deadline));
            AssertWorkedOnlyWhileLeading(example);
        }

        Assert.Equal("LEADING term=0", _examples[first].Lines[0]);
    }

    private string TokenFile => _dir.File("control-token");

    /// <summary>Waits until the example of a daemon that led under <paramref name="term"/> has stood by since.</summary>
    private Task StandsByAsync(DaemonProcess daemon, long term) =>
        _examples[daemon].WaitForAsync(l => l.SkipWhile(x => x != $"LEADING term={term}").Any(IsStandby), Deadline, $"the example that led under term {term} stands by");

    private static async Task ResignAsync(DaemonProcess daemon, TimeSpan holdOff)
    {
        using var channel = GrpcChannels.For(daemon.GrpcAddress);
        var client = new Leadership.V1.Leadership.LeadershipClient(channel);
        await client.ResignAsync(new ResignRequest { HoldOff = Duration.FromTimeSpan(holdOff) }, new Grpc.Core.Metadata { { "authorization", "Bearer " + ControlToken } }, deadline: DateTime.UtcNow.Add(Deadline));
    }

    /// <summary>Waits until the leader's example works under <paramref name="term"/>; the followers' examples, which never led, must not work meanwhile.</summary>
    private Task WorksAsync(DaemonProcess leader, long term, IReadOnlyList<DaemonProcess> followers) =>
        _examples[leader].WaitForAsync(
            lines => followers.All(NeverWorked) && lines.SkipWhile(l => l != $"LEADING term={term}").Count(l => l == $"WORK term={term}") >= 2,
            Deadline,
            $"the leader's example works under term {term}");

    /// <summary>Fails if the example of <paramref name="follower"/>, which never led, has worked.</summary>
    private bool NeverWorked(DaemonProcess follower)
    {
        var example = _examples[follower];
        Assert.False(example.Lines.Any(IsWork), $"an example works while its sidecar follows\n{example.Transcript}");
        return true;
    }

    /// <summary>Every line is a transition or a unit of work, and work follows only a LEADING line with its term.</summary>
    private static void AssertWorkedOnlyWhileLeading(ExampleProcess example)
    {
        string? term = null;
        foreach (var line in example.Lines)
        {
            var match = OutputLine().Match(line);
            Assert.True(match.Success, $"unexpected line \"{line}\"\n{example.Transcript}");
            if (match.Groups["leading"].Success)
            {
                term = match.Groups["leading"].Value;
            }
            else if (match.Groups["work"].Success)
            {
                Assert.True(term == match.Groups["work"].Value, $"\"{line}\" while not leading\n{example.Transcript}");
            }
            else
            {
                term = null;
            }
        }
    }

    private static bool IsStandby(string line) => line.StartsWith("STANDBY", StringComparison.Ordinal);

    private static bool IsWork(string line) => line.StartsWith("WORK", StringComparison.Ordinal);

    [GeneratedRegex(@"^(LEADING term=(?<leading>\d+)|WORK term=(?<work>\d+)|STANDBY (role=(LEADER|FOLLOWER|UNKNOWN) holder=\S*|sidecar unreachable|stream lost \(.+\)))$")]
    private static partial Regex OutputLine();

    private static ExampleProcess Shell(DaemonProcess daemon, string name)
    {
        Require("curl is missing; apt-get install curl (scripts/install-test-deps does)", "/bin/sh", "-c", "command -v curl");
        return ExampleProcess.Start(name, "/bin/sh", [InRepository("examples/shell/leader-loop.sh")], new Dictionary<string, string>
        {
            ["LEADER_URL"] = daemon.BaseAddress.ToString().TrimEnd('/'),
        });
    }

    private Func<DaemonProcess, string, ExampleProcess> Python()
    {
        // Debian's packages, as scripts/install-test-deps installs them; not whichever python3 comes first on PATH.
        const string python = "/usr/bin/python3";
        Require("python3-grpcio or python3-protobuf is missing; apt-get install python3-grpcio python3-protobuf (scripts/install-test-deps does)", python, "-c", "import grpc, google.protobuf");
        // The messages are generated the way examples/README.md says, into this test's directory.
        var generated = Directory.CreateDirectory(_dir.File("python")).FullName;
        Require(
            "protoc could not generate leadership_pb2; apt-get install protobuf-compiler libprotobuf-dev (scripts/install-test-deps does)",
            "protoc", $"-I{InRepository("proto")}", $"--python_out={generated}", InRepository("proto/leadership/v1/leadership.proto"));
        return (daemon, name) => ExampleProcess.Start(name, python, [InRepository("examples/python/leader_loop.py")], new Dictionary<string, string>
        {
            ["LEADER_GRPC"] = GrpcTarget(daemon),
            ["LEADER_CONTROL_TOKEN_FILE"] = TokenFile,
            ["PYTHONPATH"] = generated,
        });
    }

    private Func<DaemonProcess, string, ExampleProcess> Node()
    {
        Require("node is missing; install Node.js 18 or newer (scripts/install-test-deps does)", "node", "--version");
        Assert.True(
            Directory.Exists(InRepository("examples/node/node_modules/@grpc/grpc-js")) && Directory.Exists(InRepository("examples/node/node_modules/@grpc/proto-loader")),
            $"examples/node/node_modules is missing: run npm ci in {InRepository("examples/node")} (scripts/install-test-deps does)");
        return (daemon, name) => ExampleProcess.Start(name, "node", [InRepository("examples/node/leader-loop.js")], new Dictionary<string, string>
        {
            ["LEADER_GRPC"] = GrpcTarget(daemon),
            ["LEADER_CONTROL_TOKEN_FILE"] = TokenFile,
        });
    }

    /// <summary>The daemon's gRPC address as grpc targets spell it: <c>127.0.0.1:PORT</c> or <c>unix:/path</c>.</summary>
    private static string GrpcTarget(DaemonProcess daemon) =>
        daemon.GrpcAddress.StartsWith("unix:", StringComparison.Ordinal) ? daemon.GrpcAddress : new Uri(daemon.GrpcAddress).Authority;

    /// <summary>Runs a command that must succeed, or fails the test with <paramref name="missing"/>.</summary>
    private static void Require(string missing, string fileName, params string[] args)
    {
        var info = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        try
        {
            using var process = Process.Start(info)!;
            var stderr = process.StandardError.ReadToEndAsync();
            _ = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"{missing}\n{stderr.Result}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"{missing}\n{e.Message}");
        }
    }

    private static string InRepository(string path)
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Sidecar.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Sidecar.sln not found above the test binaries");
        }

        return Path.Combine(root, path);
    }

    /// <summary>
    /// A daemon on the shared lease, with a short lease so that a killed leader is replaced within
    /// seconds (yet a renew deadline that a loaded machine still meets), and a drain so that a
    /// terminated leader waits until its app confirms it stopped.
    /// </summary>
    private async Task<DaemonProcess> StartDaemonAsync(string identity, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity, "--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "1s", "--drain-timeout", "3s", .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // IAsyncLifetime, not IAsyncDisposable: xunit 2 disposes test classes only through IDisposable
    // and IAsyncLifetime, and a process left running here would outlive the test run.
    public async Task DisposeAsync()
    {
        foreach (var example in _examples.Values)
        {
            await example.DisposeAsync();
        }

        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        _dir.Dispose();
    }
}
