using LeaderSidecar.Stores.Etcd;

namespace LeaderSidecar.Configuration;

// The etcd store's flags, kept beside the store; CommandLine lists them with its own.
internal static partial class CommandLine
{
    // A property, not a field: partial declarations initialize static fields in no defined order.
    private static Flag[] EtcdFlags =>
    [
        new("etcd-endpoints", "URL[,URL…]", "etcd members for the etcd backend (several: fail over between them); giving them makes --backend auto pick etcd.", null,
            (b, v) => EtcdOptions.ParseEndpoints(v, out var problem) is { } endpoints
                ? Etcd(b, e => e with { Endpoints = endpoints })
                : problem),
        new("etcd-prefix", "PREFIX", "Key prefix in etcd; the lease is PREFIX + NAMESPACE/NAME.", EtcdOptions.DefaultPrefix,
            (b, v) => v.Length > 0 ? Etcd(b, e => e with { Prefix = v }) : "etcd prefix must not be empty"),
        new("etcd-user", "USER", "etcd user name; the password comes from $LEADER_SIDECAR_ETCD_PASSWORD or --etcd-password-file.", null,
            (b, v) => Etcd(b, e => e with { User = v })),
        new("etcd-password-file", "PATH", "A file holding the etcd user's password (one line).", null,
            (b, v) => Etcd(b, e => e with { PasswordFile = v })),
        new("etcd-ca", "PATH", "PEM file of the CA that signed the etcd members' certificates (https endpoints).", null,
            (b, v) => Etcd(b, e => e with { CaFile = v })),
        new("etcd-cert", "PATH", "PEM client certificate for etcd (with --etcd-key).", null,
            (b, v) => Etcd(b, e => e with { CertFile = v })),
        new("etcd-key", "PATH", "PEM private key of --etcd-cert.", null,
            (b, v) => Etcd(b, e => e with { KeyFile = v })),
    ];

    private static string? Etcd(Builder builder, Func<EtcdOptions, EtcdOptions> change)
    {
        builder.Options = builder.Options with { Etcd = change(builder.Options.Etcd ?? new EtcdOptions()) };
        return null;
    }
}
