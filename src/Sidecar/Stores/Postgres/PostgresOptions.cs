namespace LeaderSidecar.Stores.Postgres;

/// <summary>The PostgreSQL store's settings, as the <c>--postgres*</c> flags gave them.</summary>
internal sealed record PostgresOptions
{
    public const string DefaultTable = "leader_sidecar_leases";

    /// <summary>The server to use: a parsed <c>--postgres</c> value; null when the flag was not given.</summary>
    public PostgresTarget? Target { get; init; }

    /// <summary>
    /// How many times <c>--postgres</c> was applied. Its environment twin is applied before the
    /// command line, so one application with <c>$LEADER_SIDECAR_POSTGRES</c> set means the value
    /// came from the environment, where a password may be (it does not show in <c>ps</c>).
    /// </summary>
    public int TargetApplied { get; init; }

    public PostgresTableName Table { get; init; } = PostgresTableName.Default;

    /// <summary>Create the table and its triggers when they are missing (needs CREATE on the schema).</summary>
    public bool CreateTable { get; init; } = true;

    /// <summary>A file holding the password.</summary>
    public string? PasswordFile { get; init; }
}

/// <summary>
/// The lease table: <c>[SCHEMA.]TABLE</c>, each part a lowercase SQL identifier, so what the daemon
/// uses is what an unquoted name in <c>psql</c> means.
/// </summary>
internal sealed record PostgresTableName(string? Schema, string Table)
{
    /// <summary>PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes).</summary>
    public const int MaxIdentifierLength = 63;

    public static readonly PostgresTableName Default = new(null, PostgresOptions.DefaultTable);

    /// <summary>The name as SQL: each part double-quoted (a reserved word such as <c>user</c> stays a name).</summary>
    public string Sql => Schema is null ? Quote(Table) : $"{Quote(Schema)}.{Quote(Table)}";

    /// <summary>The schema prefix for other objects that live beside the table (its trigger function).</summary>
    public string SchemaPrefix => Schema is null ? "" : Quote(Schema) + ".";

    /// <summary>
    /// The <c>LISTEN</c> channel: the table's own name. Tables of the same name in other schemas
    /// share it, which costs only a re-read: a notification names the lease, not the schema.
    /// </summary>
    public string Channel => Table;

    public override string ToString() => Schema is null ? Table : $"{Schema}.{Table}";

    public static PostgresTableName? Parse(string value, out string? problem)
    {
        var parts = value.Split('.');
        if (parts.Length > 2 || !parts.All(IsIdentifier))
        {
            problem = $"table \"{PostgresTarget.Bounded(value)}\" is not [SCHEMA.]TABLE made of lowercase SQL identifiers (a-z, 0-9, _, not starting with a digit, at most {MaxIdentifierLength})";
            return null;
        }

        problem = null;
        return parts.Length == 2 ? new PostgresTableName(parts[0], parts[1]) : new PostgresTableName(null, parts[0]);
    }

    private static bool IsIdentifier(string part) =>
        part.Length is > 0 and <= MaxIdentifierLength &&
        part[0] is (>= 'a' and <= 'z') or '_' &&
        part.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '_');

    private static string Quote(string identifier) => $"\"{identifier}\"";
}
