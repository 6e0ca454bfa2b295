using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Stores.LocalFile;
using LeaderSidecar.Stores.MySql;
using LeaderSidecar.Stores.Postgres;
using LeaderSidecar.Stores.Redis;

namespace LeaderSidecar.Stores;

/// <summary>The wiring of the lease stores: adding a store is one line in <see cref="All"/>.</summary>
internal static class StoreKinds
{
    /// <summary>The fallback of <c>--backend auto</c>.</summary>
    private static readonly StoreKind Fallback = new FileStoreKind();

    /// <summary>Every store, in the order <c>--help</c> lists them.</summary>
    public static readonly IReadOnlyList<StoreKind> All =
    [
        Fallback,
        new KubernetesStoreKind(),
        new EtcdStoreKind(),
        new PostgresStoreKind(),
        new MySqlStoreKind(),
        new RedisStoreKind(),
    ];

    public static StoreKind? Find(string name) => All.FirstOrDefault(kind => kind.Name == name);

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
            return Find(options.Backend) ?? throw new StartupException($"unknown backend {options.Backend}");
        }

        var chosen = All.Select(kind => (Kind: kind, Flag: kind.ChosenBy(options))).Where(c => c.Flag is not null).ToList();
        if (chosen.Count > 1)
        {
            throw new StartupException(
                $"both {chosen[0].Flag} and {chosen[1].Flag} are given: pick the store with --backend {chosen[0].Kind.Name} or --backend {chosen[1].Kind.Name}");
        }

        return chosen.Count == 1 ? chosen[0].Kind : All.FirstOrDefault(kind => kind.IsAmbient(options, environment)) ?? Fallback;
    }
}
