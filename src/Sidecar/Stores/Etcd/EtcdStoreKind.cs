using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Etcd;

/// <summary><c>--backend etcd</c>: a key in etcd v3, its flags, and the store built from them; problems are start-up errors.</summary>
internal sealed class EtcdStoreKind : StoreKind
{
    /// <summary>The environment variable holding the etcd password (never a flag: flags show in <c>ps</c>).</summary>
    public const string PasswordVariable = "LEADER_SIDECAR_ETCD_PASSWORD";

    public override string Name => "etcd";

    public override IReadOnlyList<StoreFlag> Flags { get; } =
    [
        new("etcd-endpoints", "URL[,URL…]", "etcd members for the etcd backend (several: fail over between them); giving them makes --backend auto pick etcd.", null,
            (s, v) => EtcdOptions.ParseEndpoints(v, out var problem) is { } endpoints
                ? s.Set<EtcdOptions>(e => e with { Endpoints = endpoints })
                : problem),
        new("etcd-prefix", "PREFIX", "Key prefix in etcd; the lease is PREFIX + NAMESPACE/NAME.", EtcdOptions.DefaultPrefix,
            (s, v) => v.Length > 0 ? s.Set<EtcdOptions>(e => e with { Prefix = v }) : "etcd prefix must not be empty"),
        new("etcd-user", "USER", "etcd user name; the password comes from $LEADER_SIDECAR_ETCD_PASSWORD or --etcd-password-file.", null,
            (s, v) => s.Set<EtcdOptions>(e => e with { User = v })),
        new("etcd-password-file", "PATH", "A file holding the etcd user's password (one line).", null,
            (s, v) => s.Set<EtcdOptions>(e => e with { PasswordFile = v })),
        new("etcd-ca", "PATH", "PEM file of the CA that signed the etcd members' certificates (https endpoints).", null,
            (s, v) => s.Set<EtcdOptions>(e => e with { CaFile = v })),
        new("etcd-cert", "PATH", "PEM client certificate for etcd (with --etcd-key).", null,
            (s, v) => s.Set<EtcdOptions>(e => e with { CertFile = v })),
        new("etcd-key", "PATH", "PEM private key of --etcd-cert.", null,
            (s, v) => s.Set<EtcdOptions>(e => e with { KeyFile = v })),
    ];

    public override string? ChosenBy(SidecarOptions options) =>
        options.Stores.Get<EtcdOptions>().Endpoints.Count > 0 ? "--etcd-endpoints" : null;

    /// <summary>Builds the store: reads the password and TLS files now, so a bad one stops the start.</summary>
    public override Func<IServiceProvider, ILeaseStore> Create(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var etcd = options.Stores.Get<EtcdOptions>();
        var password = etcd.PasswordFile is { } file ? StoreFiles.ReadSecret("--etcd-password-file", file) : environment(PasswordVariable);
        if (etcd.User is null && !string.IsNullOrEmpty(password))
        {
            throw new StartupException($"an etcd password is given ({(etcd.PasswordFile is null ? "$" + PasswordVariable : "--etcd-password-file")}) but no --etcd-user");
        }

        if (etcd.User is not null && password is null)
        {
            throw new StartupException($"--etcd-user needs a password: set ${PasswordVariable} or --etcd-password-file");
        }

        var endpoints = etcd.Endpoints.Count > 0 ? etcd.Endpoints : [EtcdOptions.DefaultEndpoint];
        var roots = etcd.CaFile is { } ca ? Load("--etcd-ca", ca, () => LoadRoots(ca)) : null;
        if ((etcd.CertFile is null) != (etcd.KeyFile is null))
        {
            throw new StartupException("--etcd-cert and --etcd-key go together: give both or neither");
        }

        var certificate = etcd.CertFile is { } cert && etcd.KeyFile is { } key
            ? Load("--etcd-cert/--etcd-key", cert, () => X509Certificate2.CreateFromPemFile(cert, key))
            : null;
        return services =>
        {
            var connection = new EtcdConnection(endpoints, etcd.User, password, roots, certificate, services.GetRequiredService<ILogger<EtcdConnection>>());
            return new EtcdLeaseStore(connection, etcd.Prefix, options.Namespace, options.LeaseName, options.Election.RequestTimeout, time, services.GetRequiredService<ILogger<EtcdLeaseStore>>());
        };
    }

    private static X509Certificate2Collection LoadRoots(string path)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(path);
        return roots.Count > 0 ? roots : throw new CryptographicException("no certificate in the file");
    }

    private static T Load<T>(string flag, string path, Func<T> load)
    {
        try
        {
            return load();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            throw new StartupException($"cannot load {path} ({flag}): {e.Message}");
        }
    }
}
