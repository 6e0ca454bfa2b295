using LeaderSidecar.Configuration;
using LeaderSidecar.Election;

namespace LeaderSidecar.Stores;

/// <summary>
/// One lease store the daemon can elect through: its <c>--backend</c> name, its own flags, and how
/// it is built from them. Each store folder has one; <see cref="StoreKinds.All"/> lists them.
/// </summary>
internal abstract class StoreKind
{
    /// <summary>The name <c>--backend</c> takes, lowercase.</summary>
    public abstract string Name { get; }

    /// <summary>The store's own flags (each with its <c>LEADER_SIDECAR_*</c> twin), listed by <c>--help</c>.</summary>
    public virtual IReadOnlyList<StoreFlag> Flags => [];

    /// <summary>
    /// For <c>--backend auto</c>: the flag that asks for this store explicitly (for example
    /// <c>--etcd-endpoints</c>), or <see langword="null"/> when none was given.
    /// </summary>
    public virtual string? ChosenBy(SidecarOptions options) => null;

    /// <summary>
    /// A flag of this store that means nothing to the others (for example <c>--leader-service</c>),
    /// when given: another store chosen with it is a start-up error rather than a silent no-op.
    /// </summary>
    public virtual string? OnlyWith(SidecarOptions options) => null;

    /// <summary>
    /// For <c>--backend auto</c> when no store was asked for: whether the surroundings point at this
    /// store (a pod's service account, a <c>$KUBECONFIG</c>).
    /// </summary>
    public virtual bool IsAmbient(SidecarOptions options, Func<string, string?> environment) => false;

    /// <summary>
    /// Builds the store. Configuration problems (an unreadable file, a missing password) throw a
    /// <see cref="Hosting.StartupException"/> now; the store itself is created once the host can
    /// give it a logger.
    /// </summary>
    public abstract Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time);

    /// <summary>
    /// Registers the store, and whatever the store adds beside it (the Kubernetes store's writers
    /// of an EndpointSlice or Events), in the daemon's services.
    /// </summary>
    public virtual void Register(IServiceCollection services, SidecarOptions options, Func<string, string?> environment, TimeProvider time) =>
        services.AddSingleton(Create(options, environment, time));
}

/// <summary>
/// A store's flag. <paramref name="Apply"/> records the value in <see cref="StoreSettings"/> and
/// returns <see langword="null"/>, or returns the problem with it (one line, no secret).
/// </summary>
internal sealed record StoreFlag(string Name, string ValueName, string Help, string? Default, Func<StoreSettings, string, string?> Apply);

/// <summary>
/// Every store's settings as its flags gave them, one record type per store. Filled while the
/// command line is parsed, read-only afterwards.
/// </summary>
internal sealed class StoreSettings
{
    private readonly Dictionary<Type, object> _byType = [];

    /// <summary>This store's settings; its defaults when none of its flags was given.</summary>
    public T Get<T>()
        where T : class, new() =>
        _byType.TryGetValue(typeof(T), out var settings) ? (T)settings : new T();

    /// <summary>Whether any of this store's flags was given.</summary>
    public bool Has<T>()
        where T : class => _byType.ContainsKey(typeof(T));

    /// <summary>Replaces this store's settings; returns <see langword="null"/> (no problem) for use in <see cref="StoreFlag.Apply"/>.</summary>
    public string? Set<T>(Func<T, T> change)
        where T : class, new()
    {
        _byType[typeof(T)] = change(Get<T>());
        return null;
    }
}
