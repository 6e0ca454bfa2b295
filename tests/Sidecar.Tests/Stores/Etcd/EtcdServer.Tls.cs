using System.Net.Http;
using System.Security.Cryptography.X509Certificates;
using LeaderSidecar.Testing.LeaseApi.Tls;

namespace LeaderSidecar.Tests.Stores.Etcd;

internal sealed partial class EtcdServer
{
    private readonly EtcdTls? _tls;

    /// <summary>
    /// A single-member etcd serving clients over https with <paramref name="tls"/>'s server
    /// certificate, and accepting only clients with a certificate its CA signed.
    /// </summary>
    public static async Task<EtcdServer> StartTlsAsync(EtcdTls tls, params string[] extraArgs)
    {
        var server = new EtcdServer(extraArgs, tls);
        try
        {
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }
}

/// <summary>
/// PEM files for an etcd over https, as an operator would have them: a CA, a server certificate for
/// 127.0.0.1 it signed, a client certificate and key it signed, and an unrelated CA for the wrong-CA
/// cases. Deleted on dispose.
/// </summary>
internal sealed class EtcdTls : IDisposable
{
    /// <summary>The client certificate's common name, which etcd takes as the user when auth is on.</summary>
    public const string ClientCommonName = "leader-sidecar";

    private readonly TempDirectory _dir = new();
    private readonly TestCertificates _certificates = TestCertificates.Create(TimeProvider.System);
    private readonly X509Certificate2 _client;

    public EtcdTls()
    {
        _client = _certificates.IssueClient(ClientCommonName);
        Write(CaFile, _certificates.Authority);
        Write(ServerCertFile, _certificates.Server);
        WriteKey(ServerKeyFile, _certificates.Server);
        Write(ClientCertFile, _client);
        WriteKey(ClientKeyFile, _client);
        using var other = TestCertificates.Create(TimeProvider.System);
        Write(OtherCaFile, other.Authority);
    }

    public string CaFile => _dir.File("ca.pem");

    public string ClientCertFile => _dir.File("client.pem");

    public string ClientKeyFile => _dir.File("client-key.pem");

    /// <summary>A CA that signed none of these certificates.</summary>
    public string OtherCaFile => _dir.File("other-ca.pem");

    private string ServerCertFile => _dir.File("server.pem");

    private string ServerKeyFile => _dir.File("server-key.pem");

    public void Dispose()
    {
        _client.Dispose();
        _certificates.Dispose();
        _dir.Dispose();
    }

    /// <summary>etcd's flags: https for clients, and a client certificate signed by the CA required.</summary>
    internal string[] ServerArgs() =>
        ["--cert-file", ServerCertFile, "--key-file", ServerKeyFile, "--trusted-ca-file", CaFile, "--client-cert-auth"];

    internal string[] EtcdctlArgs() => [$"--cacert={CaFile}", $"--cert={ClientCertFile}", $"--key={ClientKeyFile}"];

    /// <summary>The tests' own connection: trusts the CA (only) and presents the client certificate.</summary>
    internal SocketsHttpHandler Handler()
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            using var presented = certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            return presented is not null && _certificates.Trusts(presented);
        };
        handler.SslOptions.ClientCertificates = [_client];
        return handler;
    }

    private static void Write(string path, X509Certificate2 certificate) => File.WriteAllText(path, certificate.ExportCertificatePem());

    private static void WriteKey(string path, X509Certificate2 certificate)
    {
        using var key = certificate.GetECDsaPrivateKey()!;
        File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
    }
}
