using System.Text;
using System.Text.RegularExpressions;
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
    private static readonly Flag[] Flags =
    [
        new("lease-name", "NAME", "Name of the lease to compete for (required).", null,
            (b, v) => Check(IsDnsSubdomain(v), $"lease name \"{v}\" is not a valid Kubernetes name (lowercase letters, digits, '-' and '.', at most 253)", () => b.Options = b.Options with { LeaseName = v })),
        new("identity", "ID", "This candidate's identity; must be unique among candidates.", "$POD_NAME, else the host name",
            (b, v) => Check(v.Length > 0, "identity must not be empty", () => b.Options = b.Options with { Identity = v })),
        new("namespace", "NS", "Namespace of the lease.", "$POD_NAMESPACE, else the service-account namespace, else default",
            (b, v) => Check(IsDnsLabel(v), $"namespace \"{v}\" is not a valid Kubernetes namespace (lowercase letters, digits and '-', at most 63)", () => b.Options = b.Options with { Namespace = v })),
        new("backend", "auto|file|kubernetes", "Lease store. auto picks kubernetes in a pod ($KUBERNETES_SERVICE_HOST set) or with a kubeconfig, else file.", "auto",
            (b, v) => Enum.TryParse<BackendKind>(v, ignoreCase: true, out var kind) && !int.TryParse(v, out _)
                ? Set(() => b.Options = b.Options with { Backend = kind })
                : $"unknown backend \"{v}\" (use auto, file or kubernetes)"),
        new("lease-dir", "DIR", "Directory of the file backend's lease files.", SidecarOptions.DefaultLeaseDirectory,
            (b, v) => Check(v.Length > 0, "lease directory must not be empty", () => b.Options = b.Options with { LeaseDirectory = v })),
        new("kubeconfig", "PATH", "Kubeconfig file for the kubernetes backend outside a cluster.", "$KUBECONFIG",
            (b, v) => Check(v.Length > 0, "kubeconfig path must not be empty", () => b.Options = b.Options with { Kubeconfig = v })),
        .. EtcdFlags,
        new("lease-duration", "DURATION", "How long followers wait after the last change they saw before taking the lease.", "15s",
            (b, v) => Duration(v, d => b.Options = b.Options with { LeaseDuration = d })),
        new("renew-deadline", "DURATION", "How long the leader keeps claiming without a successful renew.", "10s",
            (b, v) => Duration(v, d => b.Options = b.Options with { RenewDeadline = d })),
        new("retry-period", "DURATION", "How often the leader renews and candidates retry.", "2s",
            (b, v) => Duration(v, d => b.Options = b.Options with { RetryPeriod = d })),
        new("http-address", "HOST:PORT", "Where the HTTP surface listens (/leader, /status, /healthz, /readyz, /metrics).", "127.0.0.1:4040",
            (b, v) => Address(v, allowUnixSocket: false, a => b.Options = b.Options with { HttpAddress = a })),
        new("grpc-address", "HOST:PORT|unix:PATH", "Where the gRPC surface listens, h2c (leadership.v1.Leadership, grpc.health.v1.Health); a unix socket is created owner-only.", "127.0.0.1:4041",
            (b, v) => Address(v, allowUnixSocket: true, a => b.Options = b.Options with { GrpcAddress = a })),
        new("probe-address", "HOST:PORT", "A second HTTP listener with only /healthz, /readyz and /metrics, for the kubelet and Prometheus (off by default).", null,
            (b, v) => Address(v, allowUnixSocket: false, a => b.Options = b.Options with { ProbeAddress = a })),
        new("drain-timeout", "DURATION", "On shutdown, after stepping down, how long to wait for the app to confirm over gRPC (ConfirmStopped) before releasing; 0 = release at once.", "0",
            (b, v) => !GoDuration.TryParse(v, out var d, out var error) ? error
                : d < TimeSpan.Zero ? $"drain timeout must not be negative (\"{v}\")"
                : Set(() => b.Options = b.Options with { DrainTimeout = d })),
        new("leader-file", "PATH", "A file that exists only while this replica leads (off by default).", null,
            (b, v) => Check(Path.IsPathFullyQualified(v), $"leader file path must be absolute (\"{v}\")", () => b.Options = b.Options with { LeaderFile = v })),
        new("log-format", "json|text", "Log format: one JSON object a line, or text.", "json",
            (b, v) => v switch
            {
                "json" => Set(() => b.Options = b.Options with { LogFormat = LogFormat.Json }),
                "text" => Set(() => b.Options = b.Options with { LogFormat = LogFormat.Text }),
                _ => $"unknown log format \"{v}\" (use json or text)",
            }),
        new("log-level", "LEVEL", "Least severe level logged: trace, debug, info, warn, error.", "info",
            (b, v) => ParseLevel(v) is { } level ? Set(() => b.Options = b.Options with { LogLevel = level }) : $"unknown log level \"{v}\" (use trace, debug, info, warn or error)"),
    ];

    /// <summary>Reads the configuration from <paramref name="args"/> and the environment.</summary>
    public static ParseResult Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        var builder = new Builder
        {
            Options = new SidecarOptions
            {
                LeaseName = "",
                Identity = NonEmpty(environment("POD_NAME")) ?? Environment.MachineName,
                Namespace = NonEmpty(environment("POD_NAMESPACE")) ?? ReadServiceAccountNamespace() ?? "default",
                Kubeconfig = NonEmpty(environment("KUBECONFIG")),
            },
        };

        foreach (var flag in Flags)
        {
            if (NonEmpty(environment(flag.EnvironmentName)) is { } value && flag.Apply(builder, value) is { } problem)
            {
                return new ParseResult.Invalid($"{problem} (from ${flag.EnvironmentName})");
            }
        }

        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
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
                return new ParseResult.Invalid($"unknown flag --{name} (see --help)");
            }

            string value;
            if (equals >= 0)
            {
                value = arg[(equals + 1)..];
            }
            else if (i + 1 < args.Count)
            {
                value = args[++i];
            }
            else
            {
                return new ParseResult.Invalid($"flag --{name} needs a value ({flag.ValueName})");
            }

            if (flag.Apply(builder, value) is { } problem)
            {
                return new ParseResult.Invalid($"{problem} (from --{name})");
            }
        }

        if (builder.Options.LeaseName.Length == 0)
        {
            return new ParseResult.Invalid("missing --lease-name (or $LEADER_SIDECAR_LEASE_NAME): the name of the lease to compete for");
        }

        var options = builder.Options;
        if (options.Election.Validate() is { } invalid)
        {
            return new ParseResult.Invalid($"invalid timing: {invalid}");
        }

        return new ParseResult.Run(options);
    }

    public static string Version =>
        typeof(CommandLine).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    private static string Help()
    {
        var text = new StringBuilder();
        text.AppendLine("leader-sidecar: holds a leader-election lease for this replica and tells the app whether it leads.");
        text.AppendLine();
        text.AppendLine("Usage: leader-sidecar --lease-name NAME [flags]");
        text.AppendLine();
        text.AppendLine("Flags (each also read from the environment variable shown):");
        foreach (var flag in Flags)
        {
            text.AppendLine($"  --{flag.Name} {flag.ValueName}");
            text.AppendLine($"      {flag.Help}");
            text.AppendLine(flag.Default is null
                ? $"      env {flag.EnvironmentName}"
                : $"      env {flag.EnvironmentName}; default {flag.Default}");
        }

        text.AppendLine("  --help       Print this help.");
        text.AppendLine("  --version    Print the version.");
        text.AppendLine();
        text.AppendLine("Timing must satisfy lease-duration > renew-deadline > 1.2 x retry-period > 0.");
        text.AppendLine("Durations are written like 15s, 500ms or 1m30s. Bad input exits with code 2.");
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

    private static string? Duration(string value, Action<TimeSpan> apply)
    {
        if (!GoDuration.TryParse(value, out var duration, out var error))
        {
            return error;
        }

        apply(duration);
        return null;
    }

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

    private static bool IsDnsSubdomain(string value) => value.Length <= 253 && DnsSubdomain().IsMatch(value);

    private static bool IsDnsLabel(string value) => value.Length <= 63 && DnsLabel().IsMatch(value);

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex DnsSubdomain();

    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex DnsLabel();

    private sealed record Flag(string Name, string ValueName, string Help, string? Default, Func<Builder, string, string?> Apply)
    {
        public string EnvironmentName => "LEADER_SIDECAR_" + Name.Replace('-', '_').ToUpperInvariant();
    }

    /// <summary>The options being assembled; flags replace fields one at a time.</summary>
    private sealed class Builder
    {
        public required SidecarOptions Options { get; set; }
    }
}
