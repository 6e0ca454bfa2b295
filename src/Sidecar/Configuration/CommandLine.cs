using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using LeaderSidecar.AppHealth;
using LeaderSidecar.Stores;
using LeaderSidecar.Surfaces.Exec;
using Microsoft.Extensions.Logging;

namespace LeaderSidecar.Configuration;

/// <summary>What the command line asked for.</summary>
internal abstract record ParseResult
{
    public sealed record Run(SidecarOptions Options) : ParseResult;

    public sealed record ShowHelp(string Text) : ParseResult;

    public sealed record ShowVersion(string Text) : ParseResult;

    /// <summary>Bad input: one line naming the problem; the process exits with code 2.</summary>
    public sealed record Invalid(string Message) : ParseResult;
}

/// <summary>
/// Flags, each with an environment twin <c>LEADER_SIDECAR_&lt;FLAG&gt;</c>. Precedence: flag, then
/// environment, then default. Flag names are public interface: never rename one.
/// </summary>
internal static partial class CommandLine
{
    private const string EnvironmentPrefix = "LEADER_SIDECAR_";

    private static readonly Flag[] Flags =
    [
        new("lease-name", "NAME", "Name of the lease to compete for (required).", null,
            (b, v) => LeaseNameProblem(v) ?? Set(() => b.Options = b.Options with { LeaseName = v })),
        new("identity", "ID", $"This candidate's identity; must be unique among candidates (at most {SidecarOptions.MaxIdentityLength} characters).", "$POD_NAME, else the host name",
            (b, v) => IdentityProblem(v) ?? Set(() => b.Options = b.Options with { Identity = v })),
        new("namespace", "NS", "Namespace of the lease.", "$POD_NAMESPACE, else the service-account namespace, else default",
            (b, v) => NamespaceProblem(v) ?? Set(() => b.Options = b.Options with { Namespace = v })),
        new("backend", "auto|" + string.Join('|', StoreKinds.All.Select(k => k.Name)), StoreKinds.BackendHelp, SidecarOptions.AutoBackend,
            (b, v) => ParseBackend(v) is { } name
                ? Set(() => b.Options = b.Options with { Backend = name })
                : StoreKinds.LeftOut(v.ToLowerInvariant()) ?? $"unknown backend {Quote(v)} (use {string.Join(", ", StoreKinds.All.SkipLast(1).Select(k => k.Name).Prepend(SidecarOptions.AutoBackend))} or {StoreKinds.All[^1].Name})"),
        .. StoreKinds.All.SelectMany(kind => kind.Flags).Select(flag => new Flag(flag.Name, flag.ValueName, flag.Help, flag.Default, (b, v) => flag.Apply(b.Options.Stores, v))),
        new("lease-duration", "DURATION", "How long followers wait after the last change they saw before taking the lease.", "15s",
            (b, v) => Duration(v, d => b.Options = b.Options with { LeaseDuration = d })),
        new("renew-deadline", "DURATION", "How long the leader keeps claiming without a successful renew.", "10s",
            (b, v) => Duration(v, d => b.Options = b.Options with { RenewDeadline = d })),
        new("retry-period", "DURATION", "How often the leader renews and candidates retry.", "2s",
            (b, v) => Duration(v, d => b.Options = b.Options with { RetryPeriod = d })),
        new("campaign", "true|false", "Whether this replica campaigns. false: it observes the lease and reports the holder on every surface, but never leads.", "true",
            (b, v) => ParseSwitch(v) is { } on ? Set(() => b.Options = b.Options with { Campaign = on }) : $"expected true or false, not {Quote(v)}", IsSwitch: true),
        new("campaign-delay", "DURATION", "Wait this much longer than the other replicas before taking a free or expired lease, so undelayed (preferred) replicas win. Never delays renewing.", "0",
            (b, v) => Duration(v, d => b.Options = b.Options with { CampaignDelay = d })),
        new("app-health-url", "URL", "The app's own health check, http:// on a loopback host. While it fails, this replica does not campaign, and as leader it releases so a healthy replica takes over; if nobody takes the lease within a lease duration, it leads anyway.", null,
            (b, v) => AppHealthOptions.ParseUrl(v, out var problem) is { } url ? Set(() => b.AppHealthUrl = url) : problem),
        new("app-health-threshold", "N", $"Consecutive failed app health checks that make this replica unfit to lead (1 to {AppHealthOptions.MaxThreshold}).", AppHealthOptions.DefaultThreshold.ToString(CultureInfo.InvariantCulture),
            (b, v) => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= AppHealthOptions.MaxThreshold
                ? Set(() => b.AppHealthThreshold = n)
                : $"app health threshold {Quote(v)} must be a whole number from 1 to {AppHealthOptions.MaxThreshold}"),
        new("app-health-interval", "DURATION", "Time between app health checks; each may take at most 1s (or the interval, if shorter).", "the retry period",
            (b, v) => Duration(v, d => b.AppHealthInterval = d)),
        new("http-address", "HOST:PORT", "Where the HTTP surface listens (/leader, /status, /healthz, /readyz, /metrics).", "127.0.0.1:4040",
            (b, v) => Address(v, allowUnixSocket: false, a => b.Options = b.Options with { HttpAddress = a })),
        new("grpc-address", "HOST:PORT|unix:PATH", "Where the gRPC surface listens, h2c (leadership.v1.Leadership, grpc.health.v1.Health); a unix socket is created owner-only.", "127.0.0.1:4041",
            (b, v) => Address(v, allowUnixSocket: true, a => b.Options = b.Options with { GrpcAddress = a })),
        new("control-token-file", "PATH", "A file holding a token: gRPC calls that change leadership (Resign, ConfirmStopped) over TCP are accepted when they carry the metadata \"authorization: Bearer TOKEN\". Over a unix socket the socket's owner-only mode is the gate.", null,
            (b, v) => Check(Path.IsPathFullyQualified(v), $"control token file path must be absolute ({Quote(v)})", () => b.ControlTokenFile = v)),
        new("allow-tcp-control", "true|false", "Accept Resign and ConfirmStopped over TCP from any local process, without a token. Only where nobody else can reach the gRPC port, such as a pod's own loopback.", "false",
            (b, v) => ParseSwitch(v) is { } on ? Set(() => b.Options = b.Options with { AllowTcpControl = on }) : $"expected true or false, not {Quote(v)}", IsSwitch: true),
        new("probe-address", "HOST:PORT", "A second HTTP listener with only /healthz, /readyz and /metrics, for the kubelet and Prometheus (off by default).", null,
            (b, v) => Address(v, allowUnixSocket: false, a => b.Options = b.Options with { ProbeAddress = a })),
        new("drain-timeout", "DURATION", "On shutdown, after stepping down, how long to wait for the app to confirm over gRPC (ConfirmStopped) before releasing; 0 = release at once.", "0",
            (b, v) => Duration(v, d => b.Options = b.Options with { DrainTimeout = d })),
        new("leader-file", "PATH", "A file that exists only while this replica leads (off by default).", null,
            (b, v) => Check(Path.IsPathFullyQualified(v), $"leader file path must be absolute ({Quote(v)})", () => b.Options = b.Options with { LeaderFile = v })),
        new("exec-grace", "DURATION", "Exec mode: how long COMMAND has to exit after the stop signal before its process group gets SIGKILL. Must be shorter than lease-duration - renew-deadline.", GoDuration.Format(ExecOptions.DefaultGrace),
            (b, v) => Duration(v, d => b.Exec = b.Exec with { Grace = d })),
        new("exec-stop-signal", "SIGNAL", $"Exec mode: the signal that asks COMMAND's process group to stop ({string.Join(", ", Signal.StopSignals)}).", Signal.Term.Name,
            (b, v) => Signal.Parse(v) is { } signal ? Set(() => b.Exec = b.Exec with { StopSignal = signal }) : $"unknown stop signal {Quote(v)} (use {string.Join(", ", Signal.StopSignals)})"),
        new("exec-on-exit", "exit|resign|restart", "Exec mode: when COMMAND exits by itself while leading, release and exit with its code (exit), release and stay out of the election for one lease duration so another replica runs it (resign), or run it again with a growing backoff (restart).", "exit",
            (b, v) => v switch
            {
                "exit" => Set(() => b.Exec = b.Exec with { OnExit = ExecOnExit.Exit }),
                "resign" => Set(() => b.Exec = b.Exec with { OnExit = ExecOnExit.Resign }),
                "restart" => Set(() => b.Exec = b.Exec with { OnExit = ExecOnExit.Restart }),
                _ => $"unknown exec-on-exit {Quote(v)} (use exit, resign or restart)",
            }),
        new("log-format", "json|text", "Log format: one JSON object a line, or text.", "json",
            (b, v) => v switch
            {
                "json" => Set(() => b.Options = b.Options with { LogFormat = LogFormat.Json }),
                "text" => Set(() => b.Options = b.Options with { LogFormat = LogFormat.Text }),
                _ => $"unknown log format {Quote(v)} (use json or text)",
            }),
        new("log-level", "LEVEL", "Least severe level logged: trace, debug, info, warn, error.", "info",
            (b, v) => ParseLevel(v) is { } level ? Set(() => b.Options = b.Options with { LogLevel = level }) : $"unknown log level {Quote(v)} (use trace, debug, info, warn or error)"),
    ];

    /// <summary>
    /// Reads the configuration from <paramref name="args"/> and the environment;
    /// <paramref name="environmentNames"/>, the names of every environment variable, are checked for
    /// a store this build leaves out (<c>LEADER_SIDECAR_ETCD_ENDPOINTS</c> in a build without etcd).
    /// </summary>
    public static ParseResult Parse(IReadOnlyList<string> args, Func<string, string?> environment, IEnumerable<string>? environmentNames = null)
    {
        foreach (var variable in environmentNames ?? [])
        {
            if (variable.StartsWith(EnvironmentPrefix, StringComparison.Ordinal)
                && StoreKinds.LeftOut(variable[EnvironmentPrefix.Length..].Replace('_', '-').ToLowerInvariant()) is { } leftOut
                && NonEmpty(environment(variable)) is not null)
            {
                return new ParseResult.Invalid($"{leftOut} (from ${variable})");
            }
        }

        var podName = NonEmpty(environment("POD_NAME"));
        var podNamespace = NonEmpty(environment("POD_NAMESPACE"));
        var builder = new Builder
        {
            Options = new SidecarOptions
            {
                LeaseName = "",
                Identity = podName ?? Environment.MachineName,
                Namespace = podNamespace ?? ReadServiceAccountNamespace() ?? "default",
            },
        };

        foreach (var flag in Flags)
        {
            if (NonEmpty(environment(flag.EnvironmentName)) is { } value && Apply(flag, builder, value) is { } problem)
            {
                return new ParseResult.Invalid($"{problem} (from ${flag.EnvironmentName})");
            }
        }

        IReadOnlyList<string>? command = null;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg == "--")
            {
                // Everything after it is COMMAND and its arguments, flags or not.
                command = [.. args.Skip(i + 1)];
                break;
            }

            if (arg is "-h" or "--help")
            {
                return new ParseResult.ShowHelp(Help());
            }

            if (arg is "--version")
            {
                return new ParseResult.ShowVersion($"leader-sidecar {Version}");
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                return new ParseResult.Invalid($"unexpected argument \"{arg}\" (flags look like --lease-name=NAME; see --help)");
            }

            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var name = equals < 0 ? arg[2..] : arg[2..equals];
            var flag = Array.Find(Flags, f => f.Name == name);
            if (flag is null)
            {
                return new ParseResult.Invalid(StoreKinds.LeftOut(name) is { } leftOut ? $"{leftOut} (from --{name})" : $"unknown flag --{name} (see --help)");
            }

            string value;
            if (equals >= 0)
            {
                value = arg[(equals + 1)..];
            }
            else if (flag.IsSwitch)
            {
                value = "true";
            }
            else if (i + 1 < args.Count)
            {
                value = args[++i];
            }
            else
            {
                return new ParseResult.Invalid($"flag --{name} needs a value ({flag.ValueName})");
            }

            if (Apply(flag, builder, value) is { } problem)
            {
                return new ParseResult.Invalid($"{problem} (from --{name})");
            }
        }

        if (builder.Options.LeaseName.Length == 0)
        {
            return new ParseResult.Invalid("missing --lease-name (or $LEADER_SIDECAR_LEASE_NAME): the name of the lease to compete for");
        }

        // The defaults come from the pod or the host rather than a flag: checked the same way.
        var options = builder.Options;
        if (IdentityProblem(options.Identity) is { } badIdentity)
        {
            return new ParseResult.Invalid($"{badIdentity} (from {(podName is null ? "the host name" : "$POD_NAME")})");
        }

        if (NamespaceProblem(options.Namespace) is { } badNamespace)
        {
            return new ParseResult.Invalid($"{badNamespace} (from {(podNamespace is null ? "the service-account namespace file" : "$POD_NAMESPACE")})");
        }

        if (options.Election.Validate() is { } invalid)
        {
            return new ParseResult.Invalid($"invalid timing: {invalid}");
        }

        if (WhoMayLead(builder, options, command is not null, out var whoProblem) is not { } withHealth)
        {
            return new ParseResult.Invalid(whoProblem);
        }

        options = withHealth;
        if (command is not null)
        {
            if (Exec(command, builder.Exec, options, environment("PATH"), out var problem) is not { } exec)
            {
                return new ParseResult.Invalid(problem);
            }

            options = options with { Exec = exec };
        }

        if (builder.ControlTokenFile is { } tokenFile)
        {
            if (ControlToken.Read(tokenFile, out var tokenProblem) is not { } token)
            {
                return new ParseResult.Invalid($"{tokenProblem} (--control-token-file)");
            }

            options = options with { ControlToken = token };
        }

        return new ParseResult.Run(options);
    }

    /// <summary>
    /// The who-may-lead flags together: the app health settings assembled, and the combinations
    /// that cannot mean anything refused (an observer never leads, so nothing may gate or run
    /// what it would do as leader).
    /// </summary>
    private static SidecarOptions? WhoMayLead(Builder builder, SidecarOptions options, bool hasCommand, out string problem)
    {
        problem = "";
        if (builder.AppHealthUrl is null && (builder.AppHealthThreshold is not null || builder.AppHealthInterval is not null))
        {
            problem = $"--app-health-{(builder.AppHealthThreshold is not null ? "threshold" : "interval")} needs --app-health-url";
            return null;
        }

        if (!options.Campaign)
        {
            var pointless = builder.AppHealthUrl is not null ? "--app-health-url"
                : options.CampaignDelay > TimeSpan.Zero ? "--campaign-delay"
                : hasCommand ? "a COMMAND after --"
                : null;
            if (pointless is not null)
            {
                problem = $"--campaign=false never leads, so {pointless} would never matter; drop one of them";
                return null;
            }
        }

        if (builder.AppHealthUrl is not { } url)
        {
            return options;
        }

        var interval = builder.AppHealthInterval ?? options.RetryPeriod;
        if (interval <= TimeSpan.Zero)
        {
            problem = "app health interval must be greater than zero (--app-health-interval)";
            return null;
        }

        return options with { AppHealth = new AppHealthOptions(url, builder.AppHealthThreshold ?? AppHealthOptions.DefaultThreshold, interval) };
    }

    /// <summary>Exec mode's settings with COMMAND resolved through <paramref name="searchPath"/>, or null and the problem.</summary>
    private static ExecOptions? Exec(IReadOnlyList<string> command, ExecOptions exec, SidecarOptions options, string? searchPath, out string problem)
    {
        problem = command.Count == 0 ? "nothing after --: give the COMMAND to run while this replica leads"
            : command.Any(a => a.Contains('\0', StringComparison.Ordinal)) ? "the command after -- contains a NUL character"
            : ExecOptions.GraceProblem(exec.Grace, options.LeaseDuration, options.RenewDeadline) ?? "";
        if (problem.Length > 0 || ExecChild.Resolve(command[0], searchPath, out problem) is not { } path)
        {
            return null;
        }

        return exec with { Command = path, Arguments = command };
    }

    /// <summary>
    /// Quotes a value the user gave for an error line: control characters escaped, so the line stays
    /// one line, and a long value cut short, so the line stays readable.
    /// </summary>
    public static string Quote(string value)
    {
        const int Shown = 100;
        var shown = value.Length <= Shown ? value : value[..(char.IsHighSurrogate(value[Shown - 1]) ? Shown - 1 : Shown)];
        var text = new StringBuilder(shown.Length + 2).Append('"');
        foreach (var c in shown)
        {
            _ = c switch
            {
                '"' => text.Append("\\\""),
                '\\' => text.Append("\\\\"),
                '\n' => text.Append("\\n"),
                '\r' => text.Append("\\r"),
                '\t' => text.Append("\\t"),
                _ when char.IsControl(c) => text.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}"),
                _ => text.Append(c),
            };
        }

        text.Append('"');
        return shown.Length == value.Length ? text.ToString() : text.Append(CultureInfo.InvariantCulture, $"... ({value.Length} characters)").ToString();
    }

    public static string Version =>
        typeof(CommandLine).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private static string Help()
    {
        var text = new StringBuilder();
        text.AppendLine("leader-sidecar: holds a leader-election lease for this replica and tells the app whether it leads.");
        text.AppendLine();
        text.AppendLine("Usage: leader-sidecar --lease-name NAME [flags] [-- COMMAND [ARGS...]]");
        text.AppendLine("       leader-sidecar status | resign [--hold-off D]   (ask a running sidecar; status --help)");
        text.AppendLine();
        text.AppendLine("With a COMMAND (exec mode), it runs only while this replica leads, with LEADER_SIDECAR_TERM,");
        text.AppendLine("LEADER_SIDECAR_LEASE_UID and LEADER_SIDECAR_IDENTITY in its environment, and is stopped before");
        text.AppendLine("the lease is released.");
        text.AppendLine();
        text.AppendLine("Flags (each also read from the environment variable shown):");
        foreach (var flag in Flags)
        {
            text.AppendLine(flag.IsSwitch ? $"  --{flag.Name}" : $"  --{flag.Name} {flag.ValueName}");
            text.AppendLine($"      {flag.Help}");
            text.AppendLine(flag.Default is null
                ? $"      env {flag.EnvironmentName}"
                : $"      env {flag.EnvironmentName}; default {flag.Default}");
        }

        text.AppendLine("  --help       Print this help.");
        text.AppendLine("  --version    Print the version.");
        text.AppendLine();
        text.AppendLine("Timing must satisfy lease-duration > renew-deadline > 1.2 x retry-period > 0.");
        text.AppendLine($"Durations are written like 15s, 500ms or 1m30s, at most {GoDuration.Format(SidecarOptions.MaxDuration)}. Bad input exits with code 2.");
        return text.ToString();
    }

    private static string? Check(bool ok, string problem, Action apply)
    {
        if (!ok)
        {
            return problem;
        }

        apply();
        return null;
    }

    private static string? Set(Action apply)
    {
        apply();
        return null;
    }

    /// <summary>
    /// Every duration flag has the same bounds: not negative, and at most a day, far below what
    /// the timers and the lease's whole-second field can hold.
    /// </summary>
    private static string? Duration(string value, Action<TimeSpan> apply)
    {
        if (!GoDuration.TryParse(value, out var duration, out var error))
        {
            return error;
        }

        if (duration < TimeSpan.Zero)
        {
            return $"duration {Quote(value)} must not be negative";
        }

        if (duration > SidecarOptions.MaxDuration)
        {
            return $"duration {Quote(value)} is longer than {GoDuration.Format(SidecarOptions.MaxDuration)}";
        }

        apply(duration);
        return null;
    }

    /// <summary>Applies one flag's value; no flag takes control characters (a newline would name another lease, or split a log line).</summary>
    private static string? Apply(Flag flag, Builder builder, string value) =>
        value.Any(char.IsControl) ? $"{Quote(value)} contains a control character" : flag.Apply(builder, value);

    private static string? IdentityProblem(string value) =>
        value.Length == 0 ? "identity must not be empty"
        : value.Length > SidecarOptions.MaxIdentityLength ? $"identity {Quote(value)} is longer than {SidecarOptions.MaxIdentityLength} characters"
        : value.Any(char.IsControl) ? $"identity {Quote(value)} contains a control character"
        : null;

    private static string? LeaseNameProblem(string value) =>
        IsDnsSubdomain(value) ? null : $"lease name {Quote(value)} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', at most 253)";

    private static string? NamespaceProblem(string value) =>
        IsDnsLabel(value) ? null : $"namespace {Quote(value)} is not a valid Kubernetes namespace (lowercase letters, digits and '-', at most 63)";

    // Exact names only: no " file", no "File,etcd".
    private static string? ParseBackend(string value)
    {
        var name = value.ToLowerInvariant();
        return name == SidecarOptions.AutoBackend ? name : StoreKinds.Find(name)?.Name;
    }

    private static bool? ParseSwitch(string value) => value.ToLowerInvariant() switch
    {
        "true" => true,
        "false" => false,
        _ => null,
    };

    private static string? Address(string value, bool allowUnixSocket, Action<ListenAddress> apply)
    {
        if (!ListenAddress.TryParse(value, allowUnixSocket, out var address, out var error))
        {
            return error;
        }

        apply(address!);
        return null;
    }

    private static LogLevel? ParseLevel(string value) => value.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" or "information" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "critical" => LogLevel.Critical,
        _ => null,
    };

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    private static string? ReadServiceAccountNamespace()
    {
        try
        {
            return NonEmpty(File.ReadAllText(Path.Combine(Stores.Kubernetes.KubernetesConnection.ServiceAccountDirectory, "namespace")).Trim());
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    internal static bool IsDnsSubdomain(string value) => value.Length <= 253 && DnsSubdomain().IsMatch(value);

    internal static bool IsDnsLabel(string value) => value.Length <= 63 && DnsLabel().IsMatch(value);

    // \z, not $: $ also matches before a final newline, and "app\n" would name another lease.
    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\z")]
    private static partial Regex DnsSubdomain();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\z")]
    private static partial Regex DnsLabel();

    /// <param name="IsSwitch">A flag without a value (<c>--flag</c> means true; <c>--flag=false</c> also works).</param>
    private sealed record Flag(string Name, string ValueName, string Help, string? Default, Func<Builder, string, string?> Apply, bool IsSwitch = false)
    {
        public string EnvironmentName => EnvironmentPrefix + Name.Replace('-', '_').ToUpperInvariant();
    }

    /// <summary>The options being assembled; flags replace fields one at a time.</summary>
    private sealed class Builder
    {
        public required SidecarOptions Options { get; set; }

        /// <summary>Read once every flag is in, so that only the file that wins is read.</summary>
        public string? ControlTokenFile { get; set; }

        public Uri? AppHealthUrl { get; set; }

        public int? AppHealthThreshold { get; set; }

        public TimeSpan? AppHealthInterval { get; set; }

        /// <summary>The exec flags; used only when a COMMAND follows <c>--</c>.</summary>
        public ExecOptions Exec { get; set; } = new();
    }
}
