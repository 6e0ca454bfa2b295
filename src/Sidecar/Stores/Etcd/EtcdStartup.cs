using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Configuration;
using LeaderSidecar.Election;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores.Etcd;

/// <summary>Whether the daemon uses etcd, and the store built from the flags; problems are start-up errors.</summary>
internal static class EtcdStartup
{
    /// <summary>The environment variable holding the etcd password (never a flag: flags show in <c>ps</c>).</summary>
    public const string PasswordVariable = "LEADER_SIDECAR_ETCD_PASSWORD";

    /// <summary>
    /// True for <c>--backend etcd</c>, and for <c>auto</c> when etcd endpoints are given. Settings of
    /// two stores under <c>auto</c> are ambiguous: a start-up error rather than a guess.
    /// </summary>
    public static bool IsSelected(SidecarOptions options)
    {
        var given = options.Etcd is { Endpoints.Count: > 0 };
        if (options.Backend == BackendKind.Auto && given && options.Kubeconfig is not null)
        {
            throw new StartupException("both --etcd-endpoints and a kubeconfig (--kubeconfig or $KUBECONFIG) are given: pick the store with --backend etcd or --backend kubernetes");
        }

        return options.Backend == BackendKind.Etcd || (options.Backend == BackendKind.Auto && given);
    }

    /// <summary>Builds the store: reads the password and TLS files now, so a bad one stops the start.</summary>
    public static Func<IServiceProvider, ILeaseStore> CreateStore(SidecarOptions options, Func<string, string?> environment, TimeProvider time)
    {
        var etcd = options.Etcd ?? new EtcdOptions();
        var password = etcd.PasswordFile is { } file ? ReadPassword(file) : environment(PasswordVariable);
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

    private static string ReadPassword(string path)
    {
        try
        {
            // One line; a trailing newline from `echo` is not part of the password.
            return File.ReadAllText(path).TrimEnd('\r', '\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new StartupException($"cannot read the etcd password file (--etcd-password-file): {e.Message}");
        }
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
