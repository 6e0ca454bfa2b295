namespace LeaderSidecar.Tests.EndToEnd;

/// <summary>
/// Input the user controls, from the bad-input checklist of issue 6: each gives exit code 2 and one
/// line on stderr naming the problem, never a stack trace. (Flags, ports, kubeconfigs, a 403 and a
/// second copy are covered next to their backends.)
/// </summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Theory]
    [InlineData("LEADER_SIDECAR_RETRY_PERIOD", "fast", "invalid duration \"fast\"", "(from $LEADER_SIDECAR_RETRY_PERIOD)")]
    [InlineData("LEADER_SIDECAR_BACKEND", "etcd", "unknown backend \"etcd\"", "(from $LEADER_SIDECAR_BACKEND)")]
    [InlineData("LEADER_SIDECAR_HTTP_ADDRESS", "localhost", "invalid address \"localhost\"", "(from $LEADER_SIDECAR_HTTP_ADDRESS)")]
    [InlineData("LEADER_SIDECAR_LEASE_NAME", "Not_A_Name", "is not a valid Kubernetes name", "(from $LEADER_SIDECAR_LEASE_NAME)")]
    public async Task Malformed_environment_values_name_the_variable(string variable, string value, string problem, string origin)
    {
        var environment = new Dictionary<string, string> { [variable] = value };
        var args = variable == "LEADER_SIDECAR_LEASE_NAME" ? [] : new[] { "--lease-name", "x" };

        var line = await SingleErrorLineAsync(environment, args);

        Assert.Contains(problem, line, StringComparison.Ordinal);
        Assert.EndsWith(origin, line, StringComparison.Ordinal);
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
