using System.Net;
using LeaderSidecar.Configuration;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Surfaces.Exec;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Tests.Configuration;

public sealed class CommandLineTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void Defaults_follow_the_design()
    {
        var options = Run("--lease-name", "app");

        Assert.Equal("app", options.LeaseName);
        Assert.Equal(Environment.MachineName, options.Identity);
        Assert.Equal("auto", options.Backend);
        Assert.Equal(TimeSpan.FromSeconds(15), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromSeconds(10), options.RenewDeadline);
        Assert.Equal(TimeSpan.FromSeconds(2), options.RetryPeriod);
        Assert.Equal(new ListenAddress(IPAddress.Loopback, 4040, null), options.HttpAddress);
        Assert.Equal(new ListenAddress(IPAddress.Loopback, 4041, null), options.GrpcAddress);
        Assert.Null(options.Stores.Get<FileSettings>().Directory);
        Assert.Null(options.LeaderFile);
        Assert.Null(options.ProbeAddress);
        Assert.Equal(TimeSpan.Zero, options.DrainTimeout);
        Assert.Equal(LogFormat.Json, options.LogFormat);
        Assert.Equal(LogLevel.Information, options.LogLevel);
    }

    [Fact]
    public void Identity_and_namespace_come_from_the_downward_api()
    {
        _environment["POD_NAME"] = "web-7c9d-x2k";
        _environment["POD_NAMESPACE"] = "payments";

        var options = Run("--lease-name", "app");

        Assert.Equal("web-7c9d-x2k", options.Identity);
        Assert.Equal("payments", options.Namespace);
    }

    [Fact]
    public void Every_flag_has_an_environment_twin_and_flags_win()
    {
        _environment["LEADER_SIDECAR_LEASE_NAME"] = "from-env";
        _environment["LEADER_SIDECAR_RETRY_PERIOD"] = "1s";
        _environment["LEADER_SIDECAR_LOG_FORMAT"] = "text";
        _environment["LEADER_SIDECAR_GRPC_ADDRESS"] = "unix:/run/sidecar/grpc.sock";

        var options = Run("--retry-period=500ms");

        Assert.Equal("from-env", options.LeaseName);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.RetryPeriod);
        Assert.Equal(LogFormat.Text, options.LogFormat);
        Assert.Equal("/run/sidecar/grpc.sock", options.GrpcAddress.UnixSocketPath);
    }

    [Fact]
    public void All_flags_are_read()
    {
        var options = Run(
            "--lease-name", "my.app", "--identity", "pod-1", "--namespace", "prod", "--backend", "file",
            "--lease-dir", "/var/lib/leases", "--kubeconfig", "/home/me/.kube/config",
            "--lease-duration", "30s", "--renew-deadline", "20s", "--retry-period", "4s",
            "--http-address", "0.0.0.0:9000", "--grpc-address", "[::1]:9001", "--leader-file", "/shared/leader",
            "--probe-address", "0.0.0.0:4042", "--log-format", "text", "--log-level", "debug");

        Assert.Equal("my.app", options.LeaseName);
        Assert.Equal("pod-1", options.Identity);
        Assert.Equal("prod", options.Namespace);
        Assert.Equal("file", options.Backend);
        Assert.Equal("/var/lib/leases", options.Stores.Get<FileSettings>().Directory);
        Assert.Equal("/home/me/.kube/config", options.Stores.Get<KubernetesSettings>().Kubeconfig);
        Assert.Equal(TimeSpan.FromSeconds(30), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromSeconds(20), options.RenewDeadline);
        Assert.Equal(TimeSpan.FromSeconds(4), options.RetryPeriod);
        Assert.Equal("0.0.0.0:9000", options.HttpAddress.ToString());
        Assert.Equal("[::1]:9001", options.GrpcAddress.ToString());
        Assert.Equal("/shared/leader", options.LeaderFile);
        Assert.Equal("0.0.0.0:4042", options.ProbeAddress?.ToString());
        Assert.Equal(LogFormat.Text, options.LogFormat);
        Assert.Equal(LogLevel.Debug, options.LogLevel);
    }

    [Theory]
    [InlineData("unknown flag --nope", "--lease-name", "a", "--nope")]
    [InlineData("missing --lease-name")]
    [InlineData("flag --identity needs a value", "--lease-name", "a", "--identity")]
    [InlineData("unexpected argument \"extra\"", "--lease-name", "a", "extra")]
    [InlineData("unknown unit \"x\" in duration \"3x\" (use ns, us, ms, s, m or h) (from --retry-period)", "--lease-name", "a", "--retry-period", "3x")]
    [InlineData("invalid timing: lease duration (10s) must be greater than renew deadline (10s)", "--lease-name", "a", "--lease-duration", "10s")]
    [InlineData("invalid timing: renew deadline (2s) must be greater than 1.2 × retry period (2.4s)", "--lease-name", "a", "--renew-deadline", "2s")]
    [InlineData("lease name \"My_App\" is not a valid Kubernetes name", "--lease-name", "My_App")]
    [InlineData("lease name \"../../etc\" is not a valid Kubernetes name", "--lease-name", "../../etc")]
    [InlineData("namespace \"a.b\" is not a valid Kubernetes namespace", "--lease-name", "a", "--namespace", "a.b")]
    [InlineData("unknown backend \"consul\"", "--lease-name", "a", "--backend", "consul")]
    [InlineData("unknown backend \"1\"", "--lease-name", "a", "--backend", "1")]
    [InlineData("invalid port in address \"127.0.0.1:99999\"", "--lease-name", "a", "--http-address", "127.0.0.1:99999")]
    [InlineData("a unix socket is not supported here", "--lease-name", "a", "--http-address", "unix:/tmp/x")]
    [InlineData("invalid host \"example.com\"", "--lease-name", "a", "--http-address", "example.com:80")]
    [InlineData("a unix socket is not supported here (\"unix:/run/p\"); use HOST:PORT (from --probe-address)", "--lease-name", "a", "--probe-address", "unix:/run/p")]
    [InlineData("unix socket path must be absolute", "--lease-name", "a", "--grpc-address", "unix:relative.sock")]
    [InlineData("leader file path must be absolute", "--lease-name", "a", "--leader-file", "leader")]
    [InlineData("unknown log format \"xml\"", "--lease-name", "a", "--log-format", "xml")]
    [InlineData("unknown log level \"loud\"", "--lease-name", "a", "--log-level", "loud")]
    [InlineData("duration \"-1s\" must not be negative (from --drain-timeout)", "--lease-name", "a", "--drain-timeout", "-1s")]
    [InlineData("duration \"250000000h\" is longer than 24h (from --retry-period)", "--lease-name", "a", "--retry-period", "250000000h")]
    [InlineData("duration \"100000000000000000000h\" is too large (from --lease-duration)", "--lease-name", "a", "--lease-duration", "100000000000000000000h")]
    [InlineData("duration \"1200h\" is longer than 24h (from --renew-deadline)", "--lease-name", "a", "--renew-deadline", "1200h")]
    [InlineData("duration \"25h\" is longer than 24h (from --drain-timeout)", "--lease-name", "a", "--drain-timeout", "25h")]
    [InlineData("duration \"-250000000h\" must not be negative (from --retry-period)", "--lease-name", "a", "--retry-period", "-250000000h")]
    [InlineData("invalid duration \"-\" (a sign alone is not a duration) (from --retry-period)", "--lease-name", "a", "--retry-period", "-")]
    [InlineData("unknown backend \"file,kubernetes\"", "--lease-name", "a", "--backend", "file,kubernetes")]
    [InlineData("unknown backend \" file\"", "--lease-name", "a", "--backend", " file")]
    [InlineData("\"app\\n\" contains a control character (from --lease-name)", "--lease-name", "app\n")]
    [InlineData("\"me\\u0007\" contains a control character (from --identity)", "--lease-name", "a", "--identity", "me\a")]
    [InlineData("control token file path must be absolute (\"token\") (from --control-token-file)", "--lease-name", "a", "--control-token-file", "token")]
    [InlineData("cannot read control token file /nonexistent/token", "--lease-name", "a", "--control-token-file", "/nonexistent/token")]
    [InlineData("expected true or false, not \"yes\" (from --allow-tcp-control)", "--lease-name", "a", "--allow-tcp-control=yes")]
    [InlineData("invalid duration \"soon\"", "--lease-name", "a", "--drain-timeout", "soon")]
    public void Bad_input_is_one_line_naming_the_problem(string expected, params string[] args)
    {
        var result = CommandLine.Parse(args, Lookup);

        var invalid = Assert.IsType<ParseResult.Invalid>(result);
        Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Fact]
    public void Every_duration_up_to_a_day_is_accepted()
    {
        var options = Run("--lease-name", "a", "--lease-duration", "24h", "--renew-deadline", "23h", "--retry-period", "1h", "--drain-timeout", "24h");

        Assert.Equal(TimeSpan.FromHours(24), options.LeaseDuration);
        Assert.Equal(TimeSpan.FromHours(24), options.DrainTimeout);
        Assert.Equal(TimeSpan.FromHours(24), SidecarOptions.MaxDuration);
    }

    [Theory]
    [InlineData("LEADER_SIDECAR_LEASE_NAME", "app\n", "\"app\\n\" contains a control character (from $LEADER_SIDECAR_LEASE_NAME)")]
    [InlineData("LEADER_SIDECAR_NAMESPACE", "prod\n", "\"prod\\n\" contains a control character (from $LEADER_SIDECAR_NAMESPACE)")]
    [InlineData("POD_NAME", "web-1\n", "identity \"web-1\\n\" contains a control character (from $POD_NAME)")]
    [InlineData("POD_NAMESPACE", "prod\n", "namespace \"prod\\n\" is not a valid Kubernetes namespace")]
    [InlineData("POD_NAMESPACE", "Prod", "(from $POD_NAMESPACE)")]
    public void A_value_from_the_environment_with_a_trailing_newline_is_refused_not_taken_for_another_name(string variable, string value, string expected)
    {
        _environment[variable] = value;

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(variable == "LEADER_SIDECAR_LEASE_NAME" ? [] : ["--lease-name", "a"], Lookup));

        Assert.Contains(expected, invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Theory]
    [InlineData("app\n")]
    [InlineData("app\r\n")]
    [InlineData("a\nb")]
    public void A_lease_name_that_is_valid_only_up_to_a_newline_is_not_a_name(string name)
    {
        // Even past the control-character check, the name pattern must match the whole value.
        Assert.False(CommandLine.IsDnsSubdomain(name));
        Assert.True(CommandLine.IsDnsSubdomain("app"));
    }

    [Fact]
    public void A_long_bad_value_is_quoted_short_and_on_one_line()
    {
        var value = new string('A', 5000) + "\n";

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", value], Lookup));

        Assert.True(invalid.Message.Length < 300, invalid.Message);
        Assert.Contains("(5001 characters)", invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Fact]
    public void Identity_may_be_as_long_as_the_election_core_allows_and_no_longer()
    {
        var identity = new string('i', SidecarOptions.MaxIdentityLength);

        Assert.Equal(identity, Run("--lease-name", "a", "--identity", identity).Identity);
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--identity", identity + "i"], Lookup));
        Assert.EndsWith("is longer than 1024 characters (from --identity)", invalid.Message, StringComparison.Ordinal);
        _environment["POD_NAME"] = identity + "i";
        invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a"], Lookup));
        Assert.EndsWith("is longer than 1024 characters (from $POD_NAME)", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Resign_over_tcp_is_closed_by_default_and_opened_by_a_token_file_or_the_opt_in()
    {
        var closed = Run("--lease-name", "a");
        Assert.False(closed.AllowTcpControl);
        Assert.Null(closed.ControlToken);

        Assert.True(Run("--lease-name", "a", "--allow-tcp-control").AllowTcpControl);
        Assert.False(Run("--lease-name", "a", "--allow-tcp-control=false").AllowTcpControl);
        // A switch takes no value, so the next flag is read as a flag.
        Assert.Equal("b", Run("--allow-tcp-control", "--lease-name", "b").LeaseName);
        _environment["LEADER_SIDECAR_ALLOW_TCP_CONTROL"] = "true";
        Assert.True(Run("--lease-name", "a").AllowTcpControl);

        using var dir = new TempDirectory();
        var path = dir.File("token");
        File.WriteAllText(path, "  t0ken-value \n");
        _environment["LEADER_SIDECAR_CONTROL_TOKEN_FILE"] = path;
        var token = Run("--lease-name", "a").ControlToken;
        Assert.NotNull(token);
        Assert.True(token.Matches("t0ken-value"));
        Assert.False(token.Matches("t0ken-valu"));
        Assert.False(token.Matches(" t0ken-value"));
        // Never printed, not even inside the options record.
        Assert.DoesNotContain("t0ken", Run("--lease-name", "a").ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "is empty")]
    [InlineData(" \n", "is empty")]
    [InlineData("two words", "must hold one token of visible ASCII characters")]
    [InlineData("t\u00f6ken", "must hold one token of visible ASCII characters")]
    public void A_token_file_that_holds_no_usable_token_is_refused_without_echoing_it(string content, string expected)
    {
        using var dir = new TempDirectory();
        var path = dir.File("token");
        File.WriteAllText(path, content);

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--control-token-file", path], Lookup));

        Assert.Equal($"control token file {path} {expected} (--control-token-file)", invalid.Message);
    }

    [Fact]
    public void A_token_file_larger_than_any_token_is_refused()
    {
        using var dir = new TempDirectory();
        var path = dir.File("token");
        File.WriteAllText(path, new string('t', ControlToken.MaxLength + 1));

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--control-token-file", path], Lookup));

        Assert.Contains("is larger than 4096 bytes", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_drain_timeout_comes_from_its_flag_or_environment_twin()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), Run("--lease-name", "a", "--drain-timeout", "30s").DrainTimeout);
        _environment["LEADER_SIDECAR_DRAIN_TIMEOUT"] = "1m";
        Assert.Equal(TimeSpan.FromMinutes(1), Run("--lease-name", "a").DrainTimeout);
    }

    [Fact]
    public void A_bad_environment_value_names_the_variable()
    {
        _environment["LEADER_SIDECAR_LEASE_DURATION"] = "fifteen";

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a"], Lookup));

        Assert.EndsWith("(from $LEADER_SIDECAR_LEASE_DURATION)", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_lists_every_flag_with_its_environment_twin()
    {
        var help = Assert.IsType<ParseResult.ShowHelp>(CommandLine.Parse(["--help"], Lookup)).Text;

        foreach (var flag in new[] { "lease-name", "identity", "namespace", "backend", "lease-dir", "kubeconfig", "lease-duration", "renew-deadline", "retry-period", "http-address", "grpc-address", "control-token-file", "allow-tcp-control", "probe-address", "drain-timeout", "leader-file", "exec-grace", "exec-stop-signal", "exec-on-exit", "log-format", "log-level" })
        {
            Assert.Contains($"--{flag}", help, StringComparison.Ordinal);
            Assert.Contains("LEADER_SIDECAR_" + flag.Replace('-', '_').ToUpperInvariant(), help, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Without_a_command_there_is_no_exec_mode()
    {
        Assert.Null(Run("--lease-name", "app", "--exec-grace", "1s").Exec);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void Everything_after_the_double_dash_is_the_command_resolved_through_path()
    {
        using var dir = new TempDirectory();
        var tool = dir.File("tool");
        File.WriteAllText(tool, "#!/bin/sh\n");
        File.SetUnixFileMode(tool, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        _environment["PATH"] = $"/nonexistent:{dir.Path}";

        var exec = Run("--lease-name", "app", "--", "tool", "--lease-name", "-x", "--").Exec!;

        Assert.Equal(tool, exec.Command);
        Assert.Equal(["tool", "--lease-name", "-x", "--"], exec.Arguments);
        Assert.Equal(ExecOptions.DefaultGrace, exec.Grace);
        Assert.Equal(Signal.Term, exec.StopSignal);
        Assert.Equal(ExecOnExit.Exit, exec.OnExit);
        Assert.Equal("app", Run("--lease-name", "app", "--", "tool").LeaseName);
        Assert.Equal(tool, Run("--lease-name", "app", "--", tool).Exec!.Command);
    }

    [Theory]
    [InlineData("TERM", 15)]
    [InlineData("sigint", 2)]
    [InlineData("SIGHUP", 1)]
    [InlineData("9", 9)]
    [InlineData("usr1", 10)]
    public void Exec_flags_and_their_environment_twins_are_read(string signal, int number)
    {
        _environment["LEADER_SIDECAR_EXEC_ON_EXIT"] = "restart";

        var exec = Run("--lease-name", "app", "--exec-grace", "4500ms", "--exec-stop-signal", signal, "--", "/bin/sh").Exec!;

        Assert.Equal(TimeSpan.FromMilliseconds(4500), exec.Grace);
        Assert.Equal(number, exec.StopSignal.Number);
        Assert.Equal(ExecOnExit.Restart, exec.OnExit);
    }

    [Fact]
    public void The_grace_must_be_shorter_than_the_gap_between_renew_deadline_and_lease_duration()
    {
        Assert.NotNull(Run("--lease-name", "app", "--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "1s", "--exec-grace", "1999ms", "--", "/bin/sh").Exec);

        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "app", "--lease-duration", "6s", "--renew-deadline", "4s", "--retry-period", "1s", "--", "/bin/sh"], Lookup));

        Assert.StartsWith("--exec-grace 3s does not fit in lease-duration - renew-deadline (2s)", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Version_is_printed()
    {
        var version = Assert.IsType<ParseResult.ShowVersion>(CommandLine.Parse(["--version"], Lookup));

        Assert.Matches(@"^leader-sidecar \d+\.\d+\.\d+$", version.Text);
    }

    private SidecarOptions Run(params string[] args)
    {
        var result = CommandLine.Parse(args, Lookup);
        return Assert.IsType<ParseResult.Run>(result).Options;
    }

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
