using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.LocalFile;

/// <summary>The file store's settings (<c>--lease-dir</c>).</summary>
internal sealed record FileSettings
{
    /// <summary>How <c>--help</c> names the default directory.</summary>
    public const string DefaultDirectory = "/tmp/leader-sidecar-UID (private to this user)";

    /// <summary>
    /// The directory as given; <see langword="null"/>: the private per-user default, which is held
    /// to stricter rules (LeaseDirectory.cs).
    /// </summary>
    public string? Directory { get; init; }
}

/// <summary><c>--backend file</c>: a JSON file per lease in a local directory; one host only.</summary>
internal sealed class FileStoreKind : StoreKind
{
    public override string Name => "file";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("lease-dir", "DIR", "Directory of the file backend's lease files; it must not be writable by every user.", FileSettings.DefaultDirectory,
            (s, v) => v.Length > 0 ? s.Set<FileSettings>(f => f with { Directory = v }) : "lease directory must not be empty"),
    ];

    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var given = options.Stores.Get<FileSettings>().Directory;
        var store = new FileLeaseStore(given ?? LeaseDirectory.Default(), options.Namespace, options.LeaseName, time, chosenByUser: given is not null);
        if (store.CheckUsable() is { } problem)
        {
            throw new StartupException(problem + " (--lease-dir)");
        }

        if (store.ClaimIdentity(options.Identity) is { } taken)
        {
            store.Dispose();
            throw new StartupException(taken);
        }

        return _ => store;
    }
}
