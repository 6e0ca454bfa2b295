using LeaderSidecar.Configuration;
using LeaderSidecar.Hosting;
using LeaderSidecar.Stores;
using LeaderSidecar.Stores.Etcd;
using LeaderSidecar.Stores.Kubernetes;
using LeaderSidecar.Stores.LocalFile;

namespace LeaderSidecar.Tests.Stores.Etcd;

/// <summary>The <c>--etcd-*</c> flags, their environment twins, and when the daemon picks etcd.</summary>
public sealed class EtcdFlagsTests
{
    private readonly Dictionary<string, string> _environment = [];

    [Fact]
    public void All_etcd_flags_are_read()
    {
        var options = Run(
            "--lease-name", "app", "--backend", "etcd", "--etcd-endpoints", "https://etcd-0:2379, https://etcd-1:2379", "--etcd-prefix", "/apps/",
            "--etcd-user", "app", "--etcd-password-file", "/run/secrets/etcd", "--etcd-ca", "/tls/ca.pem",
            "--etcd-cert", "/tls/client.pem", "--etcd-key", "/tls/client-key.pem");

        Assert.Equal("etcd", options.Backend);
        var etcd = options.Stores.Get<EtcdOptions>();
        Assert.Equal([new Uri("https://etcd-0:2379"), new Uri("https://etcd-1:2379")], etcd.Endpoints);
        Assert.Equal("/apps/", etcd.Prefix);
        Assert.Equal("app", etcd.User);
        Assert.Equal("/run/secrets/etcd", etcd.PasswordFile);
        Assert.Equal("/tls/ca.pem", etcd.CaFile);
        Assert.Equal("/tls/client.pem", etcd.CertFile);
        Assert.Equal("/tls/client-key.pem", etcd.KeyFile);
    }

    [Fact]
    public void Each_flag_has_an_environment_twin_and_help_lists_them()
    {
        _environment["LEADER_SIDECAR_ETCD_ENDPOINTS"] = "http://10.0.0.1:2379";
        _environment["LEADER_SIDECAR_ETCD_PREFIX"] = "/x/";

        var etcd = Run("--lease-name", "app").Stores.Get<EtcdOptions>();

        Assert.Equal([new Uri("http://10.0.0.1:2379")], etcd.Endpoints);
        Assert.Equal("/x/", etcd.Prefix);
        var help = Assert.IsType<ParseResult.ShowHelp>(CommandLine.Parse(["--help"], Lookup)).Text;
        foreach (var flag in new[] { "etcd-endpoints", "etcd-prefix", "etcd-user", "etcd-password-file", "etcd-ca", "etcd-cert", "etcd-key" })
        {
            Assert.Contains($"--{flag} ", help, StringComparison.Ordinal);
            Assert.Contains("LEADER_SIDECAR_" + flag.Replace('-', '_').ToUpperInvariant(), help, StringComparison.Ordinal);
        }

        // The password is never a flag (flags show in ps): only a file or the environment.
        Assert.DoesNotContain("--etcd-password ", help, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("127.0.0.1:2379")]
    [InlineData("grpc://127.0.0.1:2379")]
    [InlineData("http://127.0.0.1:2379/v3")]
    [InlineData("http://127.0.0.1:2379,")]
    [InlineData("http://")]
    public void A_malformed_endpoint_is_one_line(string endpoints)
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--etcd-endpoints", endpoints], Lookup));

        Assert.StartsWith("etcd endpoint \"", invalid.Message, StringComparison.Ordinal);
        Assert.EndsWith("(from --etcd-endpoints)", invalid.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', invalid.Message);
    }

    [Fact]
    public void An_endpoint_with_a_password_in_it_is_refused_without_showing_the_password()
    {
        var invalid = Assert.IsType<ParseResult.Invalid>(CommandLine.Parse(["--lease-name", "a", "--etcd-endpoints", "http://app:s3cret@etcd:2379"], Lookup));

        Assert.DoesNotContain("s3cret", invalid.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Auto_picks_etcd_when_endpoints_are_given_and_refuses_two_stores()
    {
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a"));
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a", "--etcd-prefix", "/x/"));
        Assert.IsType<EtcdStoreKind>(Select("--lease-name", "a", "--etcd-endpoints", "http://127.0.0.1:2379"));
        Assert.IsType<EtcdStoreKind>(Select("--lease-name", "a", "--backend", "etcd"));
        Assert.IsType<FileStoreKind>(Select("--lease-name", "a", "--backend", "file", "--etcd-endpoints", "http://127.0.0.1:2379"));

        var both = Assert.Throws<StartupException>(() => Select("--lease-name", "a", "--etcd-endpoints", "http://127.0.0.1:2379", "--kubeconfig", "/k"));
        Assert.Contains("--backend", both.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_exported_KUBECONFIG_or_a_pod_does_not_outvote_the_etcd_flags()
    {
        _environment["KUBECONFIG"] = "/home/me/.kube/config";
        _environment["KUBERNETES_SERVICE_HOST"] = "10.0.0.1";

        Assert.IsType<EtcdStoreKind>(Select("--lease-name", "a", "--etcd-endpoints", "http://127.0.0.1:2379"));
        Assert.IsType<KubernetesStoreKind>(Select("--lease-name", "a"));
    }

    [Fact]
    public void A_user_needs_a_password_and_a_password_needs_a_user()
    {
        var options = Run("--lease-name", "a", "--etcd-user", "app");
        Assert.Throws<StartupException>(() => new EtcdStoreKind().Create(options, Lookup, TimeProvider.System));

        _environment[EtcdStoreKind.PasswordVariable] = "pw";
        Assert.Throws<StartupException>(() => new EtcdStoreKind().Create(Run("--lease-name", "a", "--backend", "etcd"), Lookup, TimeProvider.System));
        new EtcdStoreKind().Create(options, Lookup, TimeProvider.System);
    }

    [Fact]
    public void An_unreadable_password_or_certificate_file_stops_the_start()
    {
        using var dir = new TempDirectory();
        var missing = dir.File("missing");

        var password = Assert.Throws<StartupException>(() => new EtcdStoreKind().Create(Run("--lease-name", "a", "--etcd-user", "app", "--etcd-password-file", missing), Lookup, TimeProvider.System));
        Assert.Contains("--etcd-password-file", password.Message, StringComparison.Ordinal);

        var ca = Assert.Throws<StartupException>(() => new EtcdStoreKind().Create(Run("--lease-name", "a", "--etcd-ca", missing), Lookup, TimeProvider.System));
        Assert.Contains("--etcd-ca", ca.Message, StringComparison.Ordinal);

        File.WriteAllText(dir.File("cert.pem"), "not a certificate");
        var cert = Assert.Throws<StartupException>(() => new EtcdStoreKind().Create(Run("--lease-name", "a", "--etcd-cert", dir.File("cert.pem"), "--etcd-key", dir.File("cert.pem")), Lookup, TimeProvider.System));
        Assert.Contains("--etcd-cert", cert.Message, StringComparison.Ordinal);
    }

    private StoreKind Select(params string[] args) => StoreKinds.Select(Run(args), Lookup);

    private SidecarOptions Run(params string[] args) =>
        Assert.IsType<ParseResult.Run>(CommandLine.Parse(args, Lookup)).Options;

    private string? Lookup(string name) => _environment.GetValueOrDefault(name);
}
