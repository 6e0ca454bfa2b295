using System.Diagnostics;
using LeaderSidecar.Configuration;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Surfaces.Exec;
using LeaderSidecar.Tests.EndToEnd;

namespace LeaderSidecar.Tests.Deploy;

/// <summary>
/// deploy/systemd/my-singleton.service: exec mode on etcd for a plain host, with the sandboxing a
/// unit should have, a password that never appears on the command line, a stop that lets the
/// sidecar stop the program and release, and a command line the daemon's own parser accepts.
/// </summary>
public sealed class SystemdUnitTests
{
    private const string UnitPath = "deploy/systemd/my-singleton.service";
    private static readonly string[] AnalyzeLocations = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"];
    private static readonly SystemdUnit Unit = SystemdUnit.Load(Repository.PathOf(UnitPath));

    [Fact]
    public void The_sidecar_runs_the_program_in_exec_mode_on_etcd_as_the_daemon_reads_its_flags()
    {
        var options = Options();

        Assert.Equal("etcd", options.Backend);
        Assert.Equal(3, options.Stores.Get<EtcdOptions>().Endpoints.Count);
        Assert.Equal("my-singleton", options.LeaseName);
        var exec = Assert.IsType<ExecOptions>(options.Exec);
        Assert.Equal(ExecOnExit.Exit, exec.OnExit);
        Assert.Equal(["--", "/usr/local/bin/my-singleton"], Unit.ExecStart.SkipWhile(a => a != "--").Take(2));
        Assert.StartsWith("unix:/run/my-singleton/", options.GrpcAddress.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void The_password_comes_from_a_credential_never_from_the_command_line()
    {
        var credential = Assert.Single(Unit.Values("Service", "LoadCredential"));
        var name = credential.Split(':')[0];
        Assert.Equal($"{SystemdUnit.CredentialsDirectory}/{name}", Options().Stores.Get<EtcdOptions>().PasswordFile);
        Assert.DoesNotContain(Unit.ExecStart, a => a.Contains("password=", StringComparison.OrdinalIgnoreCase) && !a.StartsWith("--etcd-password-file=", StringComparison.Ordinal));
        Assert.DoesNotContain(Unit.Values("Service", "Environment"), e => e.Contains(EtcdStoreKind.PasswordVariable, StringComparison.Ordinal));
    }

    [Fact]
    public void Stopping_signals_only_the_sidecar_and_waits_long_enough_for_it_to_stop_the_program_and_release()
    {
        var options = Options();
        Assert.Equal("mixed", Unit.Single("Service", "KillMode"));
        Assert.Equal("exec", Unit.Single("Service", "Type"));
        Assert.True(GoDuration.TryParse(Unit.Single("Service", "TimeoutStopSec"), out var timeout, out _));
        Assert.True(timeout >= options.Exec!.Grace + options.DrainTimeout + options.RenewDeadline + TimeSpan.FromSeconds(2), $"TimeoutStopSec {timeout} is too short");
        Assert.Equal("on-failure", Unit.Single("Service", "Restart"));
        Assert.Equal("2", Unit.Single("Service", "RestartPreventExitStatus"));
    }

    [Theory]
    [InlineData("DynamicUser", "yes")]
    [InlineData("NoNewPrivileges", "yes")]
    [InlineData("ProtectSystem", "strict")]
    [InlineData("ProtectHome", "yes")]
    [InlineData("PrivateTmp", "yes")]
    [InlineData("PrivateDevices", "yes")]
    [InlineData("ProtectKernelTunables", "yes")]
    [InlineData("ProtectKernelModules", "yes")]
    [InlineData("ProtectControlGroups", "yes")]
    [InlineData("RestrictNamespaces", "yes")]
    [InlineData("RestrictSUIDSGID", "yes")]
    [InlineData("LockPersonality", "yes")]
    [InlineData("SystemCallArchitectures", "native")]
    [InlineData("SystemCallFilter", "@system-service")]
    [InlineData("CapabilityBoundingSet", "")]
    [InlineData("UMask", "0077")]
    public void The_unit_is_sandboxed(string key, string value)
    {
        Assert.Equal(value, Unit.Single("Service", key));
    }

    [Fact]
    public void Only_unix_and_ip_sockets_may_be_opened()
    {
        Assert.Equal(["AF_INET", "AF_INET6", "AF_UNIX"], Unit.Single("Service", "RestrictAddressFamilies").Split(' ').Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// systemd's own check, where systemd is installed (this test's machine may have no systemd:
    /// then only the checks above run). The binaries are swapped for ones that exist here.
    /// </summary>
    [Fact]
    public async Task Systemd_analyze_verify_finds_nothing_to_complain_about_where_installed()
    {
        var analyze = AnalyzeLocations.FirstOrDefault(File.Exists);
        if (analyze is null)
        {
            return;
        }

        using var dir = new TempDirectory();
        var unit = Path.Combine(dir.Path, Path.GetFileName(UnitPath));
        File.WriteAllText(unit, File.ReadAllText(Repository.PathOf(UnitPath)).Replace("/usr/local/bin/leader-sidecar", DaemonProcess.BinaryPath, StringComparison.Ordinal));
        var info = new ProcessStartInfo(analyze) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "verify", "--man=no", unit })
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();

        Assert.True(process.ExitCode == 0, await stderr);
        Assert.Equal("", (await stderr).Trim() + (await stdout).Trim());
    }

    /// <summary>The sidecar's options as the daemon parses ExecStart, with the specifiers systemd fills in.</summary>
    private static SidecarOptions Options()
    {
        // The program does not exist here; the daemon checks at start-up that it does.
        var args = Unit.ExecStart.Skip(1).Select(a => a == "/usr/local/bin/my-singleton" ? "/bin/true" : a).ToList();
        var options = CommandLine.Parse(args, _ => null) switch
        {
            ParseResult.Run run => run.Options,
            var other => throw new Xunit.Sdk.XunitException($"the daemon refuses the unit's command line: {other}"),
        };
        Assert.Equal("/usr/local/bin/leader-sidecar", Unit.ExecStart[0]);
        return options;
    }
}

/// <summary>A systemd unit file: sections of <c>Key=Value</c> lines, with backslash continuations.</summary>
internal sealed class SystemdUnit
{
    /// <summary>What systemd puts for <c>%d</c> (the credentials directory) here.</summary>
    public const string CredentialsDirectory = "/run/credentials/my-singleton.service";

    private readonly List<(string Section, string Key, string Value)> _entries;

    private SystemdUnit(List<(string Section, string Key, string Value)> entries)
    {
        _entries = entries;
    }

    /// <summary>ExecStart split into words, with <c>%d</c> and <c>%t</c> filled in.</summary>
    public IReadOnlyList<string> ExecStart =>
        Single("Service", "ExecStart").Replace("%d", CredentialsDirectory, StringComparison.Ordinal).Replace("%t", "/run", StringComparison.Ordinal)
            .Split(' ', StringSplitOptions.RemoveEmptyEntries);

    public static SystemdUnit Load(string path)
    {
        var entries = new List<(string, string, string)>();
        var section = "";
        var pending = "";
        foreach (var raw in File.ReadAllLines(path))
        {
            var line = raw.Trim();
            if (pending.Length == 0 && (line.Length == 0 || line[0] is '#' or ';'))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            line = pending + line;
            pending = "";
            if (line.StartsWith('[') && line.EndsWith(']'))
            {
                section = line[1..^1];
                continue;
            }

            var equals = line.IndexOf('=', StringComparison.Ordinal);
            Assert.True(equals > 0, $"not a Key=Value line: {line}");
            entries.Add((section, line[..equals].Trim(), line[(equals + 1)..].Trim()));
        }

        return new SystemdUnit(entries);
    }

    public IEnumerable<string> Values(string section, string key) =>
        _entries.Where(e => e.Section == section && e.Key == key).Select(e => e.Value);

    public string Single(string section, string key) => Assert.Single(Values(section, key));
}
