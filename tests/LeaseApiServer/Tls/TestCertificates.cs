using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace LeaderSidecar.Testing.LeaseApi.Tls;

/// <summary>
/// A throw-away CA and a server certificate it signed for 127.0.0.1, ::1 and localhost, made at start-up, so
/// clients can be tested with real verification against a CA file as they would use a cluster's
/// <c>ca.crt</c>, instead of switching verification off. The CA also signs client certificates on
/// request (<see cref="IssueClient"/>), for servers that authenticate clients by certificate.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private readonly X509Certificate2 _signer;
    private readonly TimeProvider _time;

    private TestCertificates(X509Certificate2 signer, X509Certificate2 server, TimeProvider time)
    {
        _signer = signer;
        _time = time;
        Authority = X509CertificateLoader.LoadCertificate(signer.RawData);
        Server = server;
    }

    /// <summary>The CA certificate, public part only.</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>The server certificate with its private key.</summary>
    public X509Certificate2 Server { get; }

    public static TestCertificates Create(TimeProvider time)
    {
        var now = time.GetUtcNow();
        using var authorityKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var authorityRequest = new CertificateRequest("CN=lease-api-test-ca", authorityKey, HashAlgorithmName.SHA256);
        authorityRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        authorityRequest.CertificateExtensions.Add(
            new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        authorityRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(authorityRequest.PublicKey, false));
        var authority = authorityRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(7));

        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        names.AddDnsName("localhost");
        var server = Issue(authority, "CN=kube-apiserver", names.Build(), "1.3.6.1.5.5.7.3.1", now);
        return new TestCertificates(authority, server, time);
    }

    /// <summary>A client certificate (extended key usage clientAuth) for <paramref name="commonName"/>, with its private key.</summary>
    public X509Certificate2 IssueClient(string commonName) =>
        Issue(_signer, $"CN={commonName}", null, "1.3.6.1.5.5.7.3.2", _time.GetUtcNow());

    /// <summary>Verifies a server certificate against this CA only, as a client given <c>ca.crt</c> does.</summary>
    public bool Trusts(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }

    public void Dispose()
    {
        _signer.Dispose();
        Authority.Dispose();
        Server.Dispose();
    }

    private static X509Certificate2 Issue(X509Certificate2 authority, string subject, X509Extension? names, string usage, DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        if (names is not null)
        {
            request.CertificateExtensions.Add(names);
        }

        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(
            new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(
            X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var signed = request.Create(authority, now.AddMinutes(-5), now.AddDays(6), serial);
        using var withKey = signed.CopyWithPrivateKey(key);

        // A PKCS#12 round trip gives a key SslStream can use on every platform (ephemeral keys are not),
        // and one that can still be exported (as PEM, for a server written in another language).
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);
    }
}
