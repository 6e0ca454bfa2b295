using LeaderSidecar.Stores;

namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Input the user controls: each gives exit code 2 and one line on stderr naming the problem, never
/// a stack trace. (Flags, ports, kubeconfigs, a 403 and a
/// second copy are covered next to their backends.)
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Theory]
    [InlineData("LEADER_SIDECAR_RETRY_PERIOD", "fast", "invalid duration \"fast\"", "(from $LEADER_SIDECAR_RETRY_PERIOD)")]
    [InlineData("LEADER_SIDECAR_BACKEND", "consul", "unknown backend \"consul\"", "(from $LEADER_SIDECAR_BACKEND)")]
    [InlineData("LEADER_SIDECAR_HTTP_ADDRESS", "localhost", "invalid address \"localhost\"", "(from $LEADER_SIDECAR_HTTP_ADDRESS)")]
    [InlineData("LEADER_SIDECAR_LEASE_NAME", "Not_A_Name", "is not a valid Kubernetes name", "(from $LEADER_SIDECAR_LEASE_NAME)")]
    [InlineData("LEADER_SIDECAR_LEASE_NAME", "app\n", "\"app\\n\" contains a control character", "(from $LEADER_SIDECAR_LEASE_NAME)")]
    [InlineData("POD_NAME", "web-1\n", "identity \"web-1\\n\" contains a control character", "(from $POD_NAME)")]
    [InlineData("LEADER_SIDECAR_BACKEND", "file,kubernetes", "unknown backend \"file,kubernetes\"", "(from $LEADER_SIDECAR_BACKEND)")]
    public async Task Malformed_environment_values_name_the_variable(string variable, string value, string problem, string origin)
    {
        var environment = new Dictionary<string, string> { [variable] = value };
        var args = variable == "LEADER_SIDECAR_LEASE_NAME" ? [] : new[] { "--lease-name", "x" };

        var line = await SingleErrorLineAsync(environment, args);

        Assert.Contains(problem, line, StringComparison.Ordinal);
        Assert.EndsWith(origin, line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--retry-period", "250000000h", "duration \"250000000h\" is longer than 24h (from --retry-period)")]
    [InlineData("--lease-duration", "100000000000000000000h", "duration \"100000000000000000000h\" is too large (from --lease-duration)")]
    [InlineData("--renew-deadline", "1200h", "duration \"1200h\" is longer than 24h (from --renew-deadline)")]
    [InlineData("--retry-period", "-", "invalid duration \"-\" (a sign alone is not a duration) (from --retry-period)")]
    [InlineData("--drain-timeout", "-1s", "duration \"-1s\" must not be negative (from --drain-timeout)")]
    [InlineData("--backend", "file,kubernetes", "unknown backend \"file,kubernetes\" (use auto, file, kubernetes, etcd, postgres, mysql or redis) (from --backend)")]
    [InlineData("--identity", "a\u001b[31mred", "\"a\\u001b[31mred\" contains a control character (from --identity)")]
    [InlineData("--control-token-file", "/nonexistent/token", "cannot read control token file /nonexistent/token")]
    public async Task Absurd_values_are_one_line_and_exit_code_2_never_a_crash(string flag, string value, string expected)
    {
        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", _dir.Path, flag, value);

        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_backend_is_one_line_naming_every_store_there_is()
    {
        var stores = StoreKinds.All.Select(k => k.Name).ToList();

        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", _dir.Path, "--backend", "file,kubernetes");

        Assert.EndsWith($"unknown backend \"file,kubernetes\" (use auto, {string.Join(", ", stores.SkipLast(1))} or {stores[^1]}) (from --backend)", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_identity_longer_than_the_election_core_allows_is_refused()
    {
        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", _dir.Path, "--identity", new string('i', 1025));

        Assert.EndsWith("is longer than 1024 characters (from --identity)", line, StringComparison.Ordinal);
        Assert.True(line.Length < 300, line);
    }

    [Fact]
    public async Task An_empty_control_token_file_is_refused()
    {
        var token = _dir.File("token");
        File.WriteAllText(token, "\n");

        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", _dir.Path, "--control-token-file", token);

        Assert.Equal($"leader-sidecar: control token file {token} is empty (--control-token-file)", line);
    }

    [Fact]
    public async Task A_regular_file_at_the_grpc_socket_path_is_left_intact_and_refused()
    {
        var path = _dir.File("grpc.sock");
        File.WriteAllText(path, "precious");

        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync("--lease-name", "x", "--lease-dir", _dir.Path, "--http-address", "127.0.0.1:0", "--grpc-address", $"unix:{path}", "--log-level", "error");

        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Equal($"leader-sidecar: {path} exists and is not a socket; not replacing it (--grpc-address)", Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal("precious", File.ReadAllText(path));
    }

    [Fact]
    public async Task A_lease_directory_that_cannot_be_written_is_refused()
    {
        // sysfs refuses new files even to root, like a read-only file system.
        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", "/sys/kernel");

        Assert.Contains("lease directory /sys/kernel is not usable", line, StringComparison.Ordinal);
        Assert.EndsWith("(--lease-dir)", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_leader_file_in_a_missing_directory_is_refused()
    {
        var missing = _dir.File("no-such-dir");

        var line = await SingleErrorLineAsync(new Dictionary<string, string>(), "--lease-name", "x", "--lease-dir", _dir.Path, "--leader-file", Path.Combine(missing, "leader"));

        Assert.Equal($"leader-sidecar: leader file directory {missing} does not exist (--leader-file)", line);
    }

    [Fact]
    public async Task A_pod_without_a_service_account_token_is_refused_instead_of_falling_back_to_a_private_file_lease()
    {
        // Every replica would hold its own file lease alone: all of them leaders.
        Assert.False(File.Exists("/var/run/secrets/kubernetes.io/serviceaccount/token"), "this test needs a machine that is not a pod");
        var pod = new Dictionary<string, string> { ["KUBERNETES_SERVICE_HOST"] = "10.96.0.1", ["KUBERNETES_SERVICE_PORT"] = "443" };

        var line = await SingleErrorLineAsync(pod, "--lease-name", "x", "--lease-dir", _dir.Path);

        Assert.StartsWith("leader-sidecar: service-account token /var/run/secrets/kubernetes.io/serviceaccount/token does not exist", line, StringComparison.Ordinal);
        Assert.EndsWith("(in-cluster configuration)", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_stale_KUBECONFIG_in_the_environment_is_named_as_the_variable_not_as_a_flag()
    {
        var stale = _dir.File("gone.kubeconfig");

        var line = await SingleErrorLineAsync(new Dictionary<string, string> { ["KUBECONFIG"] = stale }, "--lease-name", "x");

        Assert.Contains(stale, line, StringComparison.Ordinal);
        Assert.EndsWith("($KUBECONFIG)", line, StringComparison.Ordinal);
    }

    public void Dispose() => _dir.Dispose();

    private static async Task<string> SingleErrorLineAsync(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var (code, stdout, stderr) = await DaemonProcess.RunToExitAsync(environment, [.. args, "--http-address", "127.0.0.1:0", "--grpc-address", "127.0.0.1:0", "--log-level", "error"]);

        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        return line;
    }
}
