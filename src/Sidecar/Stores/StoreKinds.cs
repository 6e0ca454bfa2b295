using System.Diagnostics.CodeAnalysis;
using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Stores.MySql;
using LeaderSidecar.Stores.Postgres;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Stores;

/// <summary>
/// The wiring of the lease stores: adding a store is one line in <see cref="Lines"/> (its name, its
/// flags not named after it, and its kind behind its switch in <see cref="InBuild"/>).
/// </summary>
internal static class StoreKinds
{
    /// <summary>Every store, in the order <c>--help</c> lists them; a store this build leaves out has no kind.</summary>
    private static readonly StoreLine[] Lines =
    [
        new("file", ["lease-dir"], InBuild.File ? new FileStoreKind() : null),
        new("kubernetes", ["kubeconfig", "leader-service", "events"], InBuild.Kubernetes ? new KubernetesStoreKind() : null),
        new("etcd", [], InBuild.Etcd ? new EtcdStoreKind() : null),
        new("postgres", [], InBuild.Postgres ? new PostgresStoreKind() : null),
        new("mysql", [], InBuild.MySql ? new MySqlStoreKind() : null),
        new("redis", [], InBuild.Redis ? new RedisStoreKind() : null),
    ];

    /// <summary>Every store in this build, in the order <c>--help</c> lists them.</summary>
    public static readonly IReadOnlyList<StoreKind> All = [.. Lines.Select(line => line.Kind).OfType<StoreKind>()];

    /// <summary>The fallback of <c>--backend auto</c>: the file store, or in a build without it the first store it has.</summary>
    private static StoreKind Fallback => All[0];

    /// <summary>Every store's line, in this build or not (for the tests).</summary>
    internal static IReadOnlyList<StoreLine> Wiring => Lines;

    public static StoreKind? Find(string name) => All.FirstOrDefault(kind => kind.Name == name);

    /// <summary>
    /// When <paramref name="name"/> names a store this build leaves out (<c>etcd</c>), or one of its
    /// flags (<c>etcd-endpoints</c>, <c>lease-dir</c>) that no store in the build has: the one line
    /// saying so; else <see langword="null"/>.
    /// </summary>
    public static string? LeftOut(string name) => LeftOut(Lines, name);

    internal static string? LeftOut(IReadOnlyList<StoreLine> lines, string name) =>
        !lines.Any(line => line.Kind?.Flags.Any(flag => flag.Name == name) == true)
        && lines.FirstOrDefault(line => line.Kind is null && (name == line.Name || name.StartsWith(line.Name + "-", StringComparison.Ordinal) || line.FlagsNotNamedAfterIt.Contains(name))) is { } left
            ? $"this build has no {left.Name} store; stores in this build: {InBuildNames(lines)}"
            : null;

    /// <summary><c>--help</c>'s text of <c>--backend</c>: what <c>auto</c> picks, with the stores this build has.</summary>
    public static string BackendHelp => BackendHelpFor(Lines);

    internal static string BackendHelpFor(IReadOnlyList<StoreLine> lines)
    {
        const string InPod = "in a pod ($KUBERNETES_SERVICE_HOST set)";
        var kinds = lines.Select(line => line.Kind).OfType<StoreKind>().ToList();
        var fallback = kinds[0].Name;
        var kubernetes = kinds.Any(kind => kind.Name == "kubernetes");
        if (kinds.Count == 1)
        {
            return kubernetes
                ? "Lease store; this build has only kubernetes, which auto picks."
                : $"Lease store; this build has only {fallback}, which auto picks, except {InPod}: there name the store with --backend.";
        }

        // Each store's first flag is the one that asks for it (a test holds them to it); the file
        // store, the usual fallback, has none. Kubernetes is named in the rule anyway.
        var example = kinds.Skip(1).OrderBy(kind => kind.Name == "kubernetes").First().Flags[0].Name;
        return $"Lease store. auto picks the store whose flags are given (such as --{example})"
            + (kubernetes && fallback != "kubernetes" ? $", else kubernetes {InPod} or with $KUBECONFIG" : "")
            + $", else {fallback}"
            + (kubernetes ? "." : $"; {InPod} name the store with --backend.");
    }

    private static string InBuildNames(IReadOnlyList<StoreLine> lines) => string.Join(", ", lines.Where(line => line.Kind is not null).Select(line => line.Name));

    /// <summary>
    /// The store to use: the one <c>--backend</c> names; under <c>auto</c> the one whose flags were
    /// given (two are ambiguous: a start-up error rather than a guess), else the one the
    /// surroundings point at (in a pod: Kubernetes), else the local file.
    /// </summary>
    public static StoreKind Select(SidecarOptions options, Func<string, string?> environment)
    {
        var selected = SelectByFlags(options, environment);
        foreach (var other in All.Where(kind => kind != selected))
        {
            if (other.OnlyWith(options) is { } flag)
            {
                throw new StartupException($"{flag} works only with the {other.Name} backend, not {selected.Name}");
            }
        }

        return selected;
    }

    private static StoreKind SelectByFlags(SidecarOptions options, Func<string, string?> environment)
    {
        if (options.Backend != SidecarOptions.AutoBackend)
        {
            return Find(options.Backend) ?? throw new StartupException(LeftOut(options.Backend) ?? $"unknown backend {options.Backend}");
        }

        var chosen = All.Select(kind => (Kind: kind, Flag: kind.ChosenBy(options))).Where(c => c.Flag is not null).ToList();
        if (chosen.Count > 1)
        {
            throw new StartupException(
                $"both {chosen[0].Flag} and {chosen[1].Flag} are given: pick the store with --backend {chosen[0].Kind.Name} or --backend {chosen[1].Kind.Name}");
        }

        if (chosen.Count == 1)
        {
            return chosen[0].Kind;
        }

        if (All.FirstOrDefault(kind => kind.IsAmbient(options, environment)) is { } ambient)
        {
            return ambient;
        }

        // In a pod, a build without the Kubernetes store must not fall back to a store of its own
        // without being told: every replica would lead.
        if (KubernetesConnection.IsInCluster(environment) && Find("kubernetes") is null)
        {
            throw new StartupException($"in a pod --backend auto picks the kubernetes store, which this build does not have (stores in this build: {InBuildNames(Lines)}): name the store with --backend");
        }

        return Fallback;
    }

    /// <summary>
    /// Which stores this build has. <c>dotnet publish -p:LeaderSidecarStores=file</c> (Sidecar.csproj)
    /// sets the switches of the stores it leaves out to false, and the trimmer then drops their code
    /// and their client libraries; without it (the default build, the tests) every switch is unset:
    /// every store.
    /// </summary>
    private static class InBuild
    {
        [FeatureSwitchDefinition("LeaderSidecar.Stores.file")]
        public static bool File => Has("LeaderSidecar.Stores.file");

        [FeatureSwitchDefinition("LeaderSidecar.Stores.kubernetes")]
        public static bool Kubernetes => Has("LeaderSidecar.Stores.kubernetes");

        [FeatureSwitchDefinition("LeaderSidecar.Stores.etcd")]
        public static bool Etcd => Has("LeaderSidecar.Stores.etcd");

        [FeatureSwitchDefinition("LeaderSidecar.Stores.postgres")]
        public static bool Postgres => Has("LeaderSidecar.Stores.postgres");

        [FeatureSwitchDefinition("LeaderSidecar.Stores.mysql")]
        public static bool MySql => Has("LeaderSidecar.Stores.mysql");

        [FeatureSwitchDefinition("LeaderSidecar.Stores.redis")]
        public static bool Redis => Has("LeaderSidecar.Stores.redis");

        private static bool Has(string name) => !AppContext.TryGetSwitch(name, out var on) || on;
    }
}

/// <summary>
/// One store's line in the wiring: its <c>--backend</c> name; its flags whose names do not start
/// with it (so that a build without the store can name the store they belong to); and its kind
/// when this build has it.
/// </summary>
internal sealed record StoreLine(string Name, IReadOnlyList<string> FlagsNotNamedAfterIt, StoreKind? Kind);
