namespace LeaderSidecar.Stores.Postgres;

/// <summary>
/// The SQL of the lease table, in one place: its definition (which the daemon runs when the table
/// is missing, and which deploy/postgres/setup.sql repeats for a DBA), and the statements the
/// store sends.
/// </summary>
/// <remarks>
/// Two row triggers make every write to the table, by the daemon or by hand in <c>psql</c>,
/// behave alike: a BEFORE trigger owns <c>version</c> (1 on insert, the old one + 1 on update) and
/// <c>uid</c> (a new random one on insert, kept on update), so a hand edit is a new version the
/// leader's compare-and-swap sees; an AFTER trigger calls <c>pg_notify</c> with the row's
/// <c>namespace/name</c> on the channel named like the table, in the writing transaction, so
/// listeners hear of a write (a release, a hand edit, a delete) when it commits.
/// </remarks>
internal static class PostgresSchema
{
    /// <summary>The triggers' names; the daemon checks both exist before it uses the table.</summary>
    public const string VersionTrigger = "leader_sidecar_version";

    public const string NotifyTrigger = "leader_sidecar_notify";

    /// <summary>
    /// The longest holder read whole, in characters: any real identity is far shorter (the core
    /// refuses ours over 1024); a longer one makes the row invalid instead of being buffered.
    /// </summary>
    public const int MaxHolderCharacters = 64 * 1024;

    /// <summary>What every read returns, in the order <see cref="PostgresLeaseStore"/> reads it.</summary>
    public static readonly string Columns =
        $"CASE WHEN char_length(holder_identity) <= {MaxHolderCharacters} THEN holder_identity END, char_length(holder_identity), " +
        "lease_duration_seconds, acquire_time, renew_time, lease_transitions, version, uid::text";

    /// <summary>The table, its trigger function and its two triggers; idempotent.</summary>
    public static string Definition(PostgresTableName table) => $"""
        CREATE TABLE IF NOT EXISTS {table.Sql} (
            namespace              text        NOT NULL,
            name                   text        NOT NULL,
            holder_identity        text        NOT NULL DEFAULT '',
            lease_duration_seconds integer     NOT NULL,
            acquire_time           timestamptz,
            renew_time             timestamptz,
            lease_transitions      integer     NOT NULL DEFAULT 0,
            version                bigint      NOT NULL DEFAULT 1,
            uid                    uuid        NOT NULL DEFAULT gen_random_uuid(),
            PRIMARY KEY (namespace, name)
        );

        CREATE OR REPLACE FUNCTION {table.SchemaPrefix}leader_sidecar_lease_write() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_WHEN = 'BEFORE' THEN
                IF TG_OP = 'INSERT' THEN
                    NEW.version := 1;
                    NEW.uid := gen_random_uuid();
                ELSE
                    NEW.version := OLD.version + 1;
                    NEW.uid := OLD.uid;
                END IF;
                RETURN NEW;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                PERFORM pg_notify(TG_TABLE_NAME, OLD.namespace || '/' || OLD.name);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                PERFORM pg_notify(TG_TABLE_NAME, NEW.namespace || '/' || NEW.name);
            END IF;
            RETURN NULL;
        END
        $fn$;

        DROP TRIGGER IF EXISTS {VersionTrigger} ON {table.Sql};
        CREATE TRIGGER {VersionTrigger} BEFORE INSERT OR UPDATE ON {table.Sql}
            FOR EACH ROW EXECUTE FUNCTION {table.SchemaPrefix}leader_sidecar_lease_write();

        DROP TRIGGER IF EXISTS {NotifyTrigger} ON {table.Sql};
        CREATE TRIGGER {NotifyTrigger} AFTER INSERT OR UPDATE OR DELETE ON {table.Sql}
            FOR EACH ROW EXECUTE FUNCTION {table.SchemaPrefix}leader_sidecar_lease_write();
        """;

    /// <summary>Whether the table exists ($1: its quoted name) and how many of the two triggers it has.</summary>
    public const string Check = $"""
        SELECT to_regclass($1) IS NOT NULL,
               (SELECT count(*)::int FROM pg_trigger
                 WHERE tgrelid = to_regclass($1) AND tgname IN ('{VersionTrigger}', '{NotifyTrigger}') AND tgenabled <> 'D')
        """;

    /// <summary>Serializes the definition between daemons starting at once ($1: the table's quoted name).</summary>
    public const string DefinitionLock = "SELECT pg_advisory_xact_lock(hashtextextended('leader-sidecar ' || $1, 0))";

    public static string Select(PostgresTableName table) =>
        $"SELECT {Columns} FROM {table.Sql} WHERE namespace = $1 AND name = $2";

    /// <summary>Create-if-absent: no row back means the lease already exists.</summary>
    public static string Insert(PostgresTableName table) => $"""
        INSERT INTO {table.Sql} (namespace, name, holder_identity, lease_duration_seconds, acquire_time, renew_time, lease_transitions)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (namespace, name) DO NOTHING
        RETURNING {Columns}
        """;

    /// <summary>
    /// Compare-and-swap on version and uid: no row back means someone wrote first (or deleted and
    /// re-created the lease, which starts versions again under a new uid).
    /// </summary>
    public static string Update(PostgresTableName table) => $"""
        UPDATE {table.Sql}
           SET holder_identity = $3, lease_duration_seconds = $4, acquire_time = $5, renew_time = $6, lease_transitions = $7,
               version = version + 1
         WHERE namespace = $1 AND name = $2 AND version = $8 AND uid = $9::uuid
        RETURNING {Columns}
        """;
}
