using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Several real daemon processes on one host sharing a lease directory, observed only through
/// their HTTP surface, the lease file and their exit codes.
/// </summary>
public sealed class FileBackendTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];

    [Fact]
    public async Task Several_daemons_elect_exactly_one_leader_and_agree_on_it()
    {
        var all = await StartAsync("a", "b", "c");

        var leader = await DaemonProcess.SingleLeaderAsync(all);

        foreach (var daemon in all)
        {
            var (code, body) = await daemon.GetAsync("/leader");
            var isLeader = daemon == leader;
            Assert.Equal(isLeader ? HttpStatusCode.OK : HttpStatusCode.ServiceUnavailable, code);
            Assert.Equal(isLeader ? "LEADER" : "FOLLOWER", body.GetProperty("role").GetString());
            Assert.Equal(isLeader, body.GetProperty("leader").GetBoolean());
            Assert.Equal(0, body.GetProperty("term").GetInt64());

            var (statusCode, status) = await daemon.GetAsync("/status");
            Assert.Equal(HttpStatusCode.OK, statusCode);
            Assert.Equal(LeaseFile().GetProperty("spec").GetProperty("holderIdentity").GetString(), status.GetProperty("name").GetString());
        }
    }

    [Fact]
    public async Task Sigterm_releases_the_lease_exits_zero_and_a_follower_takes_over()
    {
        var all = await StartAsync("a", "b", "c");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var followers = all.Where(d => d != leader).ToList();

        leader.Terminate();

        Assert.Equal(0, await leader.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        var next = await DaemonProcess.SingleLeaderAsync(followers);
        var (_, body) = await next.GetAsync("/leader");
        Assert.Equal(1, body.GetProperty("term").GetInt64());
        Assert.Contains("Released", leader.Output, StringComparison.Ordinal);

        var spec = LeaseFile().GetProperty("spec");
        Assert.Equal(body.GetProperty("identity").GetString(), spec.GetProperty("holderIdentity").GetString());
        Assert.Equal(1, spec.GetProperty("leaseTransitions").GetInt32());
    }

    [Fact]
    public async Task A_killed_leader_is_replaced_once_its_lease_expires()
    {
        var timing = new[] { "--lease-duration", "2s", "--renew-deadline", "1500ms", "--retry-period", "500ms" };
        var all = await StartAsync(timing, "a", "b");
        var leader = await DaemonProcess.SingleLeaderAsync(all);
        var follower = all.Single(d => d != leader);

        await leader.KillAsync();
        var killedAt = Stopwatch.StartNew();

        await DaemonProcess.SingleLeaderAsync([follower]);
        // Not a timing assertion: only that the takeover waited for the expiry, which proves the
        // follower judged it rather than guessing.
        Assert.True(killedAt.Elapsed >= TimeSpan.FromSeconds(1), $"took over after {killedAt.Elapsed}, before the lease could expire");
    }

    [Fact]
    public async Task The_leader_file_exists_only_while_leading_and_a_leftover_is_removed()
    {
        var fileA = _dir.File("a.leader");
        var fileB = _dir.File("b.leader");
        await File.WriteAllTextAsync(fileB, "left over from a crash");

        var a = await StartOneAsync("a", "--leader-file", fileA);
        await DaemonProcess.SingleLeaderAsync([a]);
        var b = await StartOneAsync("b", "--leader-file", fileB);
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");

        Assert.False(File.Exists(fileB));
        using (var flag = JsonDocument.Parse(await File.ReadAllTextAsync(fileA)))
        {
            Assert.Equal("LEADER", flag.RootElement.GetProperty("role").GetString());
            var validUntil = DateTimeOffset.Parse(flag.RootElement.GetProperty("validUntil").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(validUntil > DateTimeOffset.UtcNow);
        }

        a.Terminate();
        Assert.Equal(0, await a.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(File.Exists(fileA));
        await Poll.UntilAsync(() => Task.FromResult(File.Exists(fileB)), Deadline, "b's leader file appears");
    }

    [Fact]
    public async Task The_leader_file_is_replaced_atomically_on_every_renew()
    {
        var file = _dir.File("leader");
        var a = await StartOneAsync("a", "--leader-file", file, "--lease-duration", "2s", "--renew-deadline", "1s", "--retry-period", "100ms");
        await DaemonProcess.SingleLeaderAsync([a]);

        // Read as fast as possible across many renews: every read sees a whole JSON status.
        var revisions = new HashSet<long>();
        var reads = 0;
        await Poll.UntilAsync(
            async () =>
            {
                for (var i = 0; i < 50; i++, reads++)
                {
                    using var status = JsonDocument.Parse(await File.ReadAllBytesAsync(file));
                    Assert.Equal("LEADER", status.RootElement.GetProperty("role").GetString());
                    revisions.Add(status.RootElement.GetProperty("revision").GetInt64());
                }

                return revisions.Count >= 5;
            },
            Deadline,
            "five renews seen in the leader file");
        Assert.True(reads >= 250);
    }

    [Theory]
    [InlineData("unknown flag --bogus", "--lease-name", "x", "--bogus")]
    [InlineData("missing --lease-name")]
    [InlineData("invalid duration \"fast\"", "--lease-name", "x", "--retry-period", "fast")]
    [InlineData("invalid timing", "--lease-name", "x", "--lease-duration", "5s")]
    [InlineData("invalid port", "--lease-name", "x", "--http-address", "127.0.0.1:http")]
    public async Task Bad_flags_give_one_line_and_exit_code_2(string expected, params string[] args)
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(args);

        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("leader-sidecar: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unusable_lease_directory_gives_one_line_and_exit_code_2()
    {
        var notADirectory = _dir.File("plain-file");
        await File.WriteAllTextAsync(notADirectory, "");

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "x", "--lease-dir", notADirectory, "--http-address", "127.0.0.1:0");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"lease directory {notADirectory} is not usable", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_second_copy_with_the_same_identity_is_refused()
    {
        var first = await StartOneAsync("twin");
        await DaemonProcess.SingleLeaderAsync([first]);

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", "twin", "--http-address", "127.0.0.1:0");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("already runs as identity \"twin\"", line, StringComparison.Ordinal);
        Assert.Equal("LEADER", await first.RoleAsync());
    }

    [Fact]
    public async Task A_port_in_use_gives_one_line_and_exit_code_2()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start();
        var port = ((IPEndPoint)squatter.LocalEndpoint).Port;

        var (code, _, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "x", "--lease-dir", _dir.Path, "--http-address", $"127.0.0.1:{port}", "--grpc-address", "127.0.0.1:0", "--log-level", "error");

        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains($"cannot listen on 127.0.0.1:{port}", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_and_version_exit_zero()
    {
        var (helpCode, help, _) = await DaemonProcess.RunToExitAsync("--help");
        var (versionCode, version, _) = await DaemonProcess.RunToExitAsync("--version");

        Assert.Equal(0, helpCode);
        Assert.Contains("--lease-name", help, StringComparison.Ordinal);
        Assert.Equal(0, versionCode);
        Assert.StartsWith("leader-sidecar ", version, StringComparison.Ordinal);
    }

    private JsonElement LeaseFile()
    {
        using var document = JsonDocument.Parse(File.ReadAllText(_dir.File("default_e2e.json")));
        return document.RootElement.Clone();
    }

    private Task<List<DaemonProcess>> StartAsync(params string[] identities) => StartAsync([], identities);

    private async Task<List<DaemonProcess>> StartAsync(string[] extra, params string[] identities)
    {
        var started = await Task.WhenAll(identities.Select(id => StartOneAsync(id, extra)));
        return [.. started];
    }

    private async Task<DaemonProcess> StartOneAsync(string identity, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "e2e", "--lease-dir", _dir.Path, "--identity", identity, .. extra]);
        lock (_daemons)
        {
            _daemons.Add(daemon);
        }

        return daemon;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // IAsyncLifetime: xunit 2 never calls IAsyncDisposable on a test class, and the daemons would outlive the run.
    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        _dir.Dispose();
    }
}
