using System.Diagnostics;
using System.Text.RegularExpressions;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// The apps under <c>examples/</c>, each attached to one of two real daemons that compete for one
/// lease: only the leader's app works, and when the leader is terminated the other app takes over
/// while the first one stops. A missing runtime or package fails the test, never skips it.
/// </summary>
public sealed partial class ExamplesTests : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];
    private readonly List<ExampleProcess> _examples = [];

    [Fact]
    public Task The_shell_example_works_only_while_its_sidecar_leads() => HandOverAsync(Shell, grpc: false);

    [Fact]
    public Task The_python_example_works_only_while_its_sidecar_leads() => HandOverAsync(Python(), grpc: true);

    [Fact]
    public Task The_node_example_works_only_while_its_sidecar_leads() => HandOverAsync(Node(), grpc: true);

    /// <param name="start">Starts the example for a daemon, under a name.</param>
    /// <param name="grpc">The example follows Watch and confirms the drain; a shell loop cannot.</param>
    private async Task HandOverAsync(Func<DaemonProcess, string, ExampleProcess> start, bool grpc)
    {
        // b serves gRPC on a unix socket, so the gRPC examples are run with both kinds of address.
        // The drain makes the hand-over wait until the old leader's app confirms it stopped.
        var a = await StartDaemonAsync("a");
        var b = await StartDaemonAsync("b", "--grpc-address", $"unix:{_dir.File("b.sock")}");
        var first = await DaemonProcess.SingleLeaderAsync([a, b]);
        var second = first == a ? b : a;
        var firstId = first == a ? "a" : "b";
        var leading = Attach(start, first, $"example on leader {firstId}");
        var standing = Attach(start, second, "example on follower");

        await standing.WaitForAsync(l => l.Contains($"STANDBY role=FOLLOWER holder={firstId}"), Deadline, "the follower's example stands by");
        await leading.WaitForAsync(l => l.Contains("LEADING term=0") && l.Count(x => x == "WORK term=0") >= 3, Deadline, "the leader's example works");
        Assert.DoesNotContain(standing.Lines, l => l.StartsWith("WORK", StringComparison.Ordinal) || l.StartsWith("LEADING", StringComparison.Ordinal));

        // A rolling update: the leader's pod is terminated.
        first.Terminate();
        await standing.WaitForAsync(l => l.SkipWhile(x => x != "LEADING term=1").Count(x => x == "WORK term=1") >= 2, Deadline, "the other example takes over and works");
        await leading.WaitForAsync(l => l.Skip(1).Any(IsStandby), Deadline, "the first example stands by");
        Assert.Equal(0, await first.WaitForExitAsync(Deadline));
        if (grpc)
        {
            Assert.Contains("the app confirmed it stopped", first.Output, StringComparison.Ordinal);
        }

        // Both exit cleanly on SIGTERM; by then every line they printed has been read.
        Assert.Equal(0, await leading.TerminateAsync(Deadline));
        Assert.Equal(0, await standing.TerminateAsync(Deadline));
        AssertWorkedOnlyWhileLeading(leading);
        AssertWorkedOnlyWhileLeading(standing);
        Assert.Equal("LEADING term=0", leading.Lines[0]);
        Assert.DoesNotContain(leading.Lines.SkipWhile(l => !IsStandby(l)), l => l.StartsWith("WORK", StringComparison.Ordinal));
        Assert.StartsWith("STANDBY role=FOLLOWER", standing.Lines[0], StringComparison.Ordinal);
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

    [GeneratedRegex(@"^(LEADING term=(?<leading>\d+)|WORK term=(?<work>\d+)|STANDBY (role=(LEADER|FOLLOWER|UNKNOWN) holder=\S*|sidecar unreachable|stream lost \(.+\)))$")]
    private static partial Regex OutputLine();

    private static ExampleProcess Shell(DaemonProcess daemon, string name)
    {
        Require("curl is missing; apt-get install curl (.ci/run does)", "/bin/sh", "-c", "command -v curl");
        return ExampleProcess.Start(name, "/bin/sh", [Example("shell/leader-loop.sh")], new Dictionary<string, string>
        {
            ["LEADER_URL"] = daemon.BaseAddress.ToString().TrimEnd('/'),
        });
    }

    private Func<DaemonProcess, string, ExampleProcess> Python()
    {
        // Debian's packages, as .ci/run installs them; not whichever python3 comes first on PATH.
        const string python = "/usr/bin/python3";
        Require("python3-grpcio or python3-protobuf is missing; apt-get install python3-grpcio python3-protobuf (.ci/run does)", python, "-c", "import grpc, google.protobuf");
        // The messages are generated the way examples/README.md says, into this test's directory.
        var generated = Directory.CreateDirectory(_dir.File("python")).FullName;
        Require(
            "protoc could not generate leadership_pb2; apt-get install protobuf-compiler libprotobuf-dev (.ci/run does)",
            "protoc", $"-I{Example("../proto")}", $"--python_out={generated}", Example("../proto/leadership/v1/leadership.proto"));
        return (daemon, name) => ExampleProcess.Start(name, python, [Example("python/leader_loop.py")], new Dictionary<string, string>
        {
            ["LEADER_GRPC"] = GrpcTarget(daemon),
            ["PYTHONPATH"] = generated,
        });
    }

    private static Func<DaemonProcess, string, ExampleProcess> Node()
    {
        Require("node is missing; install Node.js 18 or newer (.ci/run does)", "node", "--version");
        Assert.True(
            Directory.Exists(Example("node/node_modules/@grpc/grpc-js")) && Directory.Exists(Example("node/node_modules/@grpc/proto-loader")),
            $"examples/node/node_modules is missing: run npm ci in {Example("node")} (.ci/run does)");
        return (daemon, name) => ExampleProcess.Start(name, "node", [Example("node/leader-loop.js")], new Dictionary<string, string>
        {
            ["LEADER_GRPC"] = GrpcTarget(daemon),
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

    private static string Example(string path)
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Sidecar.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Sidecar.sln not found above the test binaries");
        }

        return Path.GetFullPath(Path.Combine(root, "examples", path));
    }

    private ExampleProcess Attach(Func<DaemonProcess, string, ExampleProcess> start, DaemonProcess daemon, string name)
    {
        var example = start(daemon, name);
        _examples.Add(example);
        return example;
    }

    private async Task<DaemonProcess> StartDaemonAsync(string identity, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity, "--drain-timeout", "20s", .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var example in _examples)
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
