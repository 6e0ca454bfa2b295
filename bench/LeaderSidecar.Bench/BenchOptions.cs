using System.Globalization;

namespace LeaderSidecar.Bench;

/// <summary>The harness's flags; <c>bench/run --help</c> documents them.</summary>
internal sealed record BenchOptions
{
    public string Binary { get; init; } = "artifacts/aot/leader-sidecar";

    /// <summary>The binary of the footprint scenario's file-backend leader (a file-only build, say); by default <see cref="Binary"/>.</summary>
    public string? FileBinary { get; init; }

    /// <summary>Where the daemons keep their lease: <c>kubernetes</c> (the default), <c>etcd</c>, <c>postgres</c>, <c>mysql</c> or <c>redis</c>.</summary>
    public string Backend { get; init; } = "kubernetes";

    public string? Kubeconfig { get; init; }

    public string? Namespace { get; init; }

    public bool Quick { get; init; }

    public int? GracefulTrials { get; init; }

    public int? CrashTrials { get; init; }

    public double? LoadMinutes { get; init; }

    public string Out { get; init; } = "docs/BENCHMARKS.md";

    public string Command { get; init; } = "bench/run";

    public IReadOnlySet<string> Only { get; init; } = new HashSet<string>();

    public static readonly string[] Backends = ["kubernetes", "etcd", "postgres", "mysql", "redis"];

    public static readonly string[] Scenarios = ["footprint", "startup", "http", "flood", "failover", "crash", "load"];

    public int Graceful => GracefulTrials ?? (Quick ? 3 : 20);

    public int Crash => CrashTrials ?? (Quick ? 2 : 10);

    public double Load => LoadMinutes ?? (Quick ? 0.5 : 2);

    /// <summary>Default timing; <c>--quick</c> uses the end-to-end tests' 3 s / 2 s / 500 ms to be quick.</summary>
    public Timing Timing => Quick ? Timing.Fast : Timing.Default;

    public bool Runs(string scenario) => Only.Count == 0 || Only.Contains(scenario);

    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            options = args[i] switch
            {
                "--binary" => options with { Binary = Value() },
                "--file-binary" => options with { FileBinary = Value() },
                "--backend" => options with { Backend = Value() },
                "--kubeconfig" => options with { Kubeconfig = Value() },
                "--namespace" => options with { Namespace = Value() },
                "--quick" => options with { Quick = true },
                "--trials" => options with { GracefulTrials = int.Parse(Value(), CultureInfo.InvariantCulture) },
                "--crash-trials" => options with { CrashTrials = int.Parse(Value(), CultureInfo.InvariantCulture) },
                "--load-minutes" => options with { LoadMinutes = double.Parse(Value(), CultureInfo.InvariantCulture) },
                "--out" => options with { Out = Value() },
                "--command" => options with { Command = Value() },
                "--only" => options with { Only = Value().Split(',', StringSplitOptions.RemoveEmptyEntries).ToHashSet() },
                _ => throw new ArgumentException($"unknown flag {args[i]}"),
            };
        }

        if (options.Only.FirstOrDefault(s => !Scenarios.Contains(s)) is { } unknown)
        {
            throw new ArgumentException($"unknown scenario {unknown}; known: {string.Join(", ", Scenarios)}");
        }

        if (!Backends.Contains(options.Backend))
        {
            throw new ArgumentException($"unknown backend {options.Backend}; known: {string.Join(", ", Backends)}");
        }

        if (options.Backend != "kubernetes" && (options.Kubeconfig is not null || options.Namespace is not null))
        {
            throw new ArgumentException("--kubeconfig and --namespace go with --backend kubernetes");
        }

        return options;
    }
}
