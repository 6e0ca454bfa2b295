using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Hosting;

namespace LeaderSidecar.Stores;

/// <summary>
/// The files a store reads at start-up (a password, a CA, a client certificate), each read now so
/// that a bad one stops the start with one line naming the flag; and the check of a server
/// certificate against a private CA.
/// </summary>
internal static class StoreFiles
{
    /// <summary>A secret from a file: its first line (a trailing newline from <c>echo</c> is not part of it).</summary>
    public static string ReadSecret(string flag, string path)
    {
        try
        {
            return File.ReadAllText(path).TrimEnd('\r', '\n');
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new StartupException($"cannot read {path} ({flag}): {e.Message}");
        }
    }

    /// <summary>The CA certificates in a PEM file; none is a start-up error.</summary>
    public static X509Certificate2Collection LoadRoots(string flag, string path) => Load(flag, path, () =>
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(path);
        return roots.Count > 0 ? roots : throw new CryptographicException("no certificate in the file");
    });

    /// <summary>A client certificate and its private key, both PEM.</summary>
    public static X509Certificate2 LoadClientCertificate(string flags, string certificatePath, string keyPath) =>
        Load(flags, certificatePath, () => X509Certificate2.CreateFromPemFile(certificatePath, keyPath));

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="roots"/> (and only those).</summary>
    public static bool ChainsTo(X509Certificate certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
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
