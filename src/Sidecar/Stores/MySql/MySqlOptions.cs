using System.Globalization;
using MySqlConnector;

namespace LeaderSidecar.Stores.MySql;

/// <summary>The MySQL store's settings, as the <c>--mysql*</c> flags gave them (MySqlStoreKind.cs).</summary>
internal sealed record MySqlOptions
{
    public const string DefaultTable = "leader_sidecar_leases";

    /// <summary>
    /// How often a follower reads the row: the store has no change feed, so this bounds how late a
    /// release is seen (half of it on average) against the queries every replica sends (four a
    /// second each). docs/STORES-MYSQL.md has the measurements.
    /// </summary>
    public static readonly TimeSpan DefaultPollInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>The shortest poll interval accepted: below it the queries cost more than they buy.</summary>
    public static readonly TimeSpan MinPollInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// <c>--mysql</c> as given (a URL or a connection string). It may carry a password only when it
    /// came from the environment; MySqlStoreKind checks that against <c>$LEADER_SIDECAR_MYSQL</c>.
    /// </summary>
    public string? Source { get; init; }

    public string Table { get; init; } = DefaultTable;

    public bool CreateTable { get; init; } = true;

    public TimeSpan PollInterval { get; init; } = DefaultPollInterval;

    /// <summary>A file holding the password (the environment variable is read at start-up instead).</summary>
    public string? PasswordFile { get; init; }

    /// <summary>
    /// Turns <c>mysql://USER@HOST[:PORT]/DATABASE[?ssl-mode=…&amp;ssl-ca=…]</c> or a MySqlConnector
    /// connection string into connection settings; <see langword="null"/> with
    /// <paramref name="problem"/> set when it is neither. The problem never quotes the value (it
    /// may hold a password) beyond its host.
    /// </summary>
    public static MySqlConnectionStringBuilder? Parse(string value, out string? problem)
    {
        var builder = value.Contains("://", StringComparison.Ordinal) ? FromUrl(value, out problem) : FromConnectionString(value, out problem);
        if (builder is null)
        {
            return null;
        }

        problem = builder.Server.Length == 0 ? "the MySQL server has no host"
            : builder.UserID.Length == 0 ? "the MySQL server needs a user (mysql://USER@HOST/DATABASE, or User ID=… in a connection string)"
            : builder.Database.Length == 0 ? "the MySQL server needs a database (mysql://USER@HOST/DATABASE, or Database=… in a connection string)"
            : null;
        return problem is null ? builder : null;
    }

    /// <summary>A table name MySQL accepts unquoted: letters, digits and '_', not starting with a digit, at most 64.</summary>
    public static bool IsTableName(string value) =>
        value.Length is > 0 and <= 64 && !char.IsAsciiDigit(value[0]) && value.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static MySqlConnectionStringBuilder? FromUrl(string value, out string? problem)
    {
        const string Shape = "is not a URL like mysql://USER@HOST:3306/DATABASE (a password goes in $LEADER_SIDECAR_MYSQL_PASSWORD or --mysql-password-file)";
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("mysql" or "mariadb") || uri.Host.Length == 0 || uri.Fragment.Length > 0)
        {
            problem = $"MySQL URL {Shown(value)} {Shape}";
            return null;
        }

        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Contains('/', StringComparison.Ordinal))
        {
            problem = $"MySQL URL {Shown(value)} {Shape}";
            return null;
        }

        var userInfo = uri.UserInfo;
        var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
        var builder = new MySqlConnectionStringBuilder
        {
            Server = uri.IdnHost,
            Port = uri.IsDefaultPort || uri.Port < 0 ? 3306u : (uint)uri.Port,
            UserID = Uri.UnescapeDataString(colon < 0 ? userInfo : userInfo[..colon]),
            Database = database,
        };
        if (colon >= 0)
        {
            builder.Password = Uri.UnescapeDataString(userInfo[(colon + 1)..]);
        }

        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
            var setting = Uri.UnescapeDataString(equals < 0 ? "" : pair[(equals + 1)..]);
            problem = name switch
            {
                "ssl-mode" => SslMode(setting) is { } mode ? Set(() => builder.SslMode = mode) : $"MySQL URL: ssl-mode {CommandLineQuote(setting)} is not one of disabled, preferred, required, verify-ca, verify-identity",
                "ssl-ca" => setting.Length > 0 ? Set(() => builder.SslCa = setting) : "MySQL URL: ssl-ca needs the path of a PEM file",
                "ssl-cert" => setting.Length > 0 ? Set(() => builder.SslCert = setting) : "MySQL URL: ssl-cert needs the path of a PEM file",
                "ssl-key" => setting.Length > 0 ? Set(() => builder.SslKey = setting) : "MySQL URL: ssl-key needs the path of a PEM file",
                _ => $"MySQL URL: unknown parameter {CommandLineQuote(name)} (known: ssl-mode, ssl-ca, ssl-cert, ssl-key; use a connection string for anything else)",
            };
            if (problem is not null)
            {
                return null;
            }
        }

        problem = null;
        return builder;
    }

    private static MySqlConnectionStringBuilder? FromConnectionString(string value, out string? problem)
    {
        try
        {
            var builder = new MySqlConnectionStringBuilder(value);
            problem = null;
            return builder;
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            // The value may hold a password: name the problem, not the value. MySqlConnector's
            // messages quote only the option's name.
            problem = $"--mysql is neither a mysql:// URL nor a valid connection string ({FirstLine(e.Message)})";
            return null;
        }
    }

    /// <summary>The MySQL client's <c>--ssl-mode</c> names, and MySqlConnector's own.</summary>
    private static MySqlSslMode? SslMode(string value) => value.ToLowerInvariant() switch
    {
        "disabled" or "none" => MySqlSslMode.None,
        "preferred" => MySqlSslMode.Preferred,
        "required" => MySqlSslMode.Required,
        "verify-ca" or "verifyca" or "verify_ca" => MySqlSslMode.VerifyCA,
        "verify-identity" or "verify-full" or "verifyfull" or "verify_identity" => MySqlSslMode.VerifyFull,
        _ => null,
    };

    private static string? Set(Action apply)
    {
        apply();
        return null;
    }

    private static string CommandLineQuote(string value) => Configuration.CommandLine.Quote(value);

    private static string FirstLine(string message)
    {
        var line = message.Split('\n')[0].Trim();
        return line.Length > 200 ? line[..200] + "…" : line;
    }

    // A malformed URL may carry a password (mysql://user:secret@host): show it without.
    private static string Shown(string value)
    {
        var at = value.LastIndexOf('@');
        var scheme = value.IndexOf("://", StringComparison.Ordinal);
        var shown = at > 0 ? (scheme >= 0 && scheme < at ? value[..(scheme + 3)] : "") + "…" + value[at..] : value;
        return CommandLineQuote(shown);
    }

    /// <summary>For logs: <c>HOST:PORT/DATABASE</c>, never a password.</summary>
    public static string Address(MySqlConnectionStringBuilder connection) =>
        string.Create(CultureInfo.InvariantCulture, $"{connection.Server}:{connection.Port}/{connection.Database}");
}
