namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// <c>leader-sidecar status</c> and <c>leader-sidecar resign</c>, run as separate processes against
/// running daemons, as <c>kubectl exec POD -c leader-sidecar -- /leader-sidecar resign</c> would.
/// </summary>
public sealed class ControlCommandTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private readonly TempDirectory _dir = new();
    private readonly List<DaemonProcess> _daemons = [];

    [Fact]
    public async Task Resign_over_the_unix_socket_hands_over_and_status_shows_both_sides()
    {
        var socket = _dir.File("a.sock");
        var a = await StartAsync("a", "--grpc-address", $"unix:{socket}");
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var b = await StartAsync("b");
        await Poll.UntilAsync(async () => await b.RoleAsync() == "FOLLOWER", Deadline, "b follows");

        var status = await DaemonProcess.RunToExitAsync("status", "--address", $"unix:{socket}");
        Assert.Equal(0, status.ExitCode);
        Assert.Contains("role: leader\n", status.StdOut, StringComparison.Ordinal);
        Assert.Contains("holder: a\n", status.StdOut, StringComparison.Ordinal);

        // The address from the environment, as an exec into the sidecar's container inherits it.
        var resign = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_GRPC_ADDRESS"] = $"unix:{socket}" }, "resign", "--hold-off", "30s");
        Assert.True(resign.ExitCode == 0, resign.StdErr);
        Assert.Contains("resigned; staying out of the election for 30s", resign.StdOut, StringComparison.Ordinal);
        Assert.Contains("role: follower\n", resign.StdOut, StringComparison.Ordinal);

        await Poll.UntilAsync(async () => await b.RoleAsync() == "LEADER", Deadline, "b takes over");
        await Poll.UntilAsync(
            async () => (await DaemonProcess.RunToExitAsync("status", "--address", $"unix:{socket}")).StdOut.Contains("holder: b\n", StringComparison.Ordinal),
            Deadline,
            "a's status names b as the holder");
        Assert.Equal("FOLLOWER", await a.RoleAsync());
    }

    [Fact]
    public async Task Over_tcp_resign_is_refused_without_the_control_token_and_works_with_it()
    {
        var tokenFile = _dir.File("token");
        await File.WriteAllTextAsync(tokenFile, "s3cret-token\n");
        var a = await StartAsync("a", "--control-token-file", tokenFile);
        await Poll.UntilAsync(async () => await a.RoleAsync() == "LEADER", Deadline, "a leads");
        var address = new Uri(a.GrpcAddress).Authority;

        var refused = await DaemonProcess.RunToExitAsync("resign", "--address", address);
        Assert.Equal(1, refused.ExitCode);
        Assert.StartsWith("leader-sidecar resign: refused: ", refused.StdErr, StringComparison.Ordinal);
        Assert.Single(refused.StdErr.TrimEnd('\n').Split('\n'));
        Assert.Equal("LEADER", await a.RoleAsync());

        var resigned = await DaemonProcess.RunToExitAsync(
            new Dictionary<string, string> { ["LEADER_SIDECAR_CONTROL_TOKEN_FILE"] = tokenFile }, "resign", "--address", address, "--hold-off", "30s");
        Assert.True(resigned.ExitCode == 0, resigned.StdErr);
        Assert.DoesNotContain("s3cret", resigned.StdOut + resigned.StdErr, StringComparison.Ordinal);
        Assert.NotEqual("LEADER", await a.RoleAsync());
    }

    [Theory]
    [InlineData(2, "leader-sidecar resign: --hold-off must be between 0s and 1h (-1s)", "resign", "--hold-off", "-1s")]
    [InlineData(2, "leader-sidecar resign: --hold-off must be between 0s and 1h (2h", "resign", "--hold-off", "2h")]
    [InlineData(2, "leader-sidecar status: unknown argument \"--hold-off\" (see status --help)", "status", "--hold-off", "1s")]
    [InlineData(2, "leader-sidecar status: --address needs a value", "status", "--address")]
    [InlineData(2, "leader-sidecar status: invalid address", "status", "--address", "somewhere")]
    [InlineData(2, "leader-sidecar resign: cannot read control token file /nonexistent/token", "resign", "--address", "127.0.0.1:1", "--control-token-file", "/nonexistent/token")]
    [InlineData(1, "leader-sidecar status: no sidecar answers at 127.0.0.1:1", "status", "--address", "127.0.0.1:1")]
    [InlineData(1, "leader-sidecar resign: no sidecar answers at unix:/nonexistent/grpc.sock", "resign", "--address", "unix:/nonexistent/grpc.sock")]
    public async Task Bad_input_and_an_absent_sidecar_are_one_line_and_a_non_zero_exit(int exitCode, string expected, params string[] args)
    {
        var result = await DaemonProcess.RunToExitAsync(args);

        Assert.Equal(exitCode, result.ExitCode);
        Assert.StartsWith(expected, result.StdErr, StringComparison.Ordinal);
        Assert.Single(result.StdErr.TrimEnd('\n').Split('\n'));
        Assert.Equal("", result.StdOut);
    }

    private async Task<DaemonProcess> StartAsync(string identity, params string[] extra)
    {
        var daemon = await DaemonProcess.StartAsync(["--lease-name", "cli", "--lease-dir", _dir.Path, "--identity", identity, .. extra]);
        _daemons.Add(daemon);
        return daemon;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var daemon in _daemons)
        {
            await daemon.DisposeAsync();
        }

        _dir.Dispose();
    }
}
