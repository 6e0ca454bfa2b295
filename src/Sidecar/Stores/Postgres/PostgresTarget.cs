using System.Globalization;
using Npgsql;

namespace LeaderSidecar.Stores.Postgres;

/// <summary>
/// Where the server is, from <c>--postgres</c>: a libpq-style URL
/// (<c>postgresql://USER@HOST[:PORT][,HOST2[:PORT]]/DB?sslmode=verify-full</c>) or an Npgsql
/// connection string (<c>Host=db;Username=app;Database=app;SSL Mode=VerifyFull</c>). Problems are
/// one line that never quotes the value: it may carry a password.
/// </summary>
internal sealed class PostgresTarget
{
    private static readonly string[] UrlParameters =
    [
        "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword",
        "target_session_attrs", "connect_timeout", "application_name", "options",
    ];

    private PostgresTarget(NpgsqlConnectionStringBuilder settings)
    {
        Settings = settings;
    }

    /// <summary>The parsed settings, including any password they carried.</summary>
    public NpgsqlConnectionStringBuilder Settings { get; }

    /// <summary>Whether the value itself carries a secret (a password, or a client key's password).</summary>
    public bool HasSecret => !string.IsNullOrEmpty(Settings.Password) || !string.IsNullOrEmpty(Settings.SslPassword);

    /// <summary>Hosts and database, for logs: never a user's password.</summary>
    public string Address => $"{Hosts()}/{Settings.Database}";

    public static PostgresTarget? Parse(string value, out string? problem)
    {
        problem = null;
        var settings = new NpgsqlConnectionStringBuilder();
        if (value.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase))
        {
            problem = ParseUrl(value[(value.IndexOf("://", StringComparison.Ordinal) + 3)..], settings);
        }
        else if (value.Contains('='))
        {
            problem = ParseConnectionString(value, settings);
        }
        else
        {
            problem = "postgres: expected a postgres:// URL or an Npgsql connection string (Host=…;Username=…;Database=…)";
        }

        if (problem is null && string.IsNullOrEmpty(settings.Host))
        {
            problem = "postgres: no host (postgresql://USER@HOST:5432/DB, or Host=… in a connection string)";
        }

        return problem is null ? new PostgresTarget(settings) : null;
    }

    private static string? ParseUrl(string rest, NpgsqlConnectionStringBuilder settings)
    {
        var authorityEnd = rest.IndexOfAny(['/', '?']);
        var authority = authorityEnd < 0 ? rest : rest[..authorityEnd];
        rest = authorityEnd < 0 ? "" : rest[authorityEnd..];

        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = authority[..at];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            settings.Username = Decode(colon < 0 ? userInfo : userInfo[..colon]);
            if (colon >= 0)
            {
                settings.Password = Decode(userInfo[(colon + 1)..]);
            }

            authority = authority[(at + 1)..];
        }

        if (authority.Length > 0)
        {
            var hosts = new List<string>();
            foreach (var entry in authority.Split(','))
            {
                if (HostProblem(entry, out var host) is { } problem)
                {
                    return problem;
                }

                hosts.Add(host);
            }

            settings.Host = string.Join(',', hosts);
        }

        var queryStart = rest.IndexOf('?', StringComparison.Ordinal);
        var path = queryStart < 0 ? rest : rest[..queryStart];
        if (path.Length > 1)
        {
            settings.Database = Decode(path[1..]);
        }

        if (queryStart < 0)
        {
            return null;
        }

        foreach (var pair in rest[(queryStart + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Decode(equals < 0 ? pair : pair[..equals]);
            var value = equals < 0 ? "" : Decode(pair[(equals + 1)..]);
            if (Parameter(settings, key, value) is { } problem)
            {
                return problem;
            }
        }

        return null;
    }

    /// <summary>One URL parameter, under libpq's name, into Npgsql's setting.</summary>
    private static string? Parameter(NpgsqlConnectionStringBuilder settings, string key, string value)
    {
        switch (key)
        {
            case "host":
                settings.Host = value;
                return null;
            case "port":
                return PortProblem(value, out var port) ?? Set(() => settings.Port = port);
            case "dbname":
                settings.Database = value;
                return null;
            case "user":
                settings.Username = value;
                return null;
            case "password":
                settings.Password = value;
                return null;
            case "sslmode":
                return value switch
                {
                    "disable" => Set(() => settings.SslMode = SslMode.Disable),
                    "allow" => Set(() => settings.SslMode = SslMode.Allow),
                    "prefer" => Set(() => settings.SslMode = SslMode.Prefer),
                    "require" => Set(() => settings.SslMode = SslMode.Require),
                    "verify-ca" => Set(() => settings.SslMode = SslMode.VerifyCA),
                    "verify-full" => Set(() => settings.SslMode = SslMode.VerifyFull),
                    _ => $"postgres: sslmode \"{Bounded(value)}\" is not disable, allow, prefer, require, verify-ca or verify-full",
                };
            case "sslrootcert":
                settings.RootCertificate = value;
                return null;
            case "sslcert":
                settings.SslCertificate = value;
                return null;
            case "sslkey":
                settings.SslKey = value;
                return null;
            case "sslpassword":
                settings.SslPassword = value;
                return null;
            case "target_session_attrs":
                return value is "any" or "read-write" or "read-only" or "primary" or "standby" or "prefer-primary" or "prefer-standby"
                    ? Set(() => settings.TargetSessionAttributes = value)
                    : $"postgres: target_session_attrs \"{Bounded(value)}\" is not any, read-write, read-only, primary, standby, prefer-primary or prefer-standby";
            case "connect_timeout":
                return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is > 0 and <= 3600
                    ? Set(() => settings.Timeout = seconds)
                    : $"postgres: connect_timeout \"{Bounded(value)}\" is not a number of seconds from 1 to 3600";
            case "application_name":
                settings.ApplicationName = value;
                return null;
            case "options":
                settings.Options = value;
                return null;
            default:
                return $"postgres: unsupported URL parameter \"{Bounded(key)}\" (supported: {string.Join(", ", UrlParameters)})";
        }
    }

    private static string? ParseConnectionString(string value, NpgsqlConnectionStringBuilder settings)
    {
        if (!value.Contains(';') && value.Trim().Contains(' '))
        {
            return "postgres: this looks like libpq's \"key=value key=value\" form; use a postgres:// URL or Npgsql's Key=Value;Key=Value form";
        }

        try
        {
            settings.ConnectionString = value;
            return null;
        }
        catch (ArgumentException e)
        {
            // "Keyword not supported: 'x'" names the key only; other messages are not quoted, as
            // they could repeat a value (a password is a value).
            return e.Message.StartsWith("Keyword not supported", StringComparison.Ordinal)
                ? $"postgres: connection string: {Bounded(e.Message)}"
                : "postgres: not a valid Npgsql connection string (Key=Value;Key=Value)";
        }
        catch (Exception e) when (e is FormatException or OverflowException or InvalidCastException)
        {
            return "postgres: a value in the connection string has the wrong format (a port or a timeout that is not a number, an unknown SSL Mode)";
        }
    }

    private static string? HostProblem(string entry, out string host)
    {
        host = "";
        string name;
        string? portText = null;
        if (entry.StartsWith('['))
        {
            var close = entry.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                return "postgres: an IPv6 host in the URL lacks its closing ']'";
            }

            name = entry[..(close + 1)];
            var after = entry[(close + 1)..];
            if (after.Length > 0)
            {
                if (after[0] != ':')
                {
                    return "postgres: text after an IPv6 host in the URL (expected :PORT)";
                }

                portText = after[1..];
            }
        }
        else
        {
            var colon = entry.LastIndexOf(':');
            name = Decode(colon < 0 ? entry : entry[..colon]);
            portText = colon < 0 ? null : entry[(colon + 1)..];
        }

        if (name.Length == 0)
        {
            return "postgres: an empty host in the URL's host list";
        }

        if (portText is not null)
        {
            if (PortProblem(portText, out var port) is { } problem)
            {
                return problem;
            }

            host = $"{name}:{port.ToString(CultureInfo.InvariantCulture)}";
            return null;
        }

        host = name;
        return null;
    }

    private static string? PortProblem(string text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is > 0 and <= 65535
            ? null
            : $"postgres: port \"{Bounded(text)}\" is not a number from 1 to 65535";

    private static string Decode(string text)
    {
        try
        {
            return Uri.UnescapeDataString(text);
        }
        catch (UriFormatException)
        {
            return text;
        }
    }

    private string Hosts() =>
        Settings.Host!.Contains(':', StringComparison.Ordinal) || Settings.Host.Contains(',', StringComparison.Ordinal) || Settings.Host.StartsWith('/')
            ? Settings.Host
            : $"{Settings.Host}:{Settings.Port.ToString(CultureInfo.InvariantCulture)}";

    private static string? Set(Action apply)
    {
        apply();
        return null;
    }

    /// <summary>A piece of the value that is not a secret, bounded and on one line.</summary>
    internal static string Bounded(string text)
    {
        var kept = text.Length <= 64 ? text : text[..64] + "…";
        return string.Concat(kept.Select(c => char.IsControl(c) ? ' ' : c));
    }
}
