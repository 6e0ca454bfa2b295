-- leader-sidecar: the lease table for the postgres backend, and a least-privilege role for it.
--
-- Run once as the table's future owner (a DBA, or the database owner), then start every daemon
-- with --postgres-create-table=false as the role below:
--
--   psql "postgresql://dba@db:5432/app" -v ON_ERROR_STOP=1 -f setup.sql
--   psql "postgresql://dba@db:5432/app" -c '\password leader_sidecar'
--
-- psql variables choose the role's name (-v role=NAME, default leader_sidecar). The table is
-- leader_sidecar_leases in the first schema of the search_path; for another name or schema, replace
-- "leader_sidecar_leases" below and pass the same name to --postgres-table. Running it again
-- changes nothing (the table, its rows and the grants stay).

\if :{?role}
\else
    \set role leader_sidecar
\endif

BEGIN;

-- The table, its trigger function and its two triggers: exactly what a daemon runs when it may
-- create the table itself. The BEFORE trigger owns version (+1 on every update) and uid (new on
-- every insert); the AFTER trigger notifies the channel named like the table, at commit.
CREATE TABLE IF NOT EXISTS "leader_sidecar_leases" (
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

CREATE OR REPLACE FUNCTION leader_sidecar_lease_write() RETURNS trigger
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

DROP TRIGGER IF EXISTS leader_sidecar_version ON "leader_sidecar_leases";
CREATE TRIGGER leader_sidecar_version BEFORE INSERT OR UPDATE ON "leader_sidecar_leases"
    FOR EACH ROW EXECUTE FUNCTION leader_sidecar_lease_write();

DROP TRIGGER IF EXISTS leader_sidecar_notify ON "leader_sidecar_leases";
CREATE TRIGGER leader_sidecar_notify AFTER INSERT OR UPDATE OR DELETE ON "leader_sidecar_leases"
    FOR EACH ROW EXECUTE FUNCTION leader_sidecar_lease_write();

-- The daemons' role: it may log in, read, create and update lease rows, and nothing else (no
-- DELETE, no DDL). LISTEN and pg_notify need no grant.
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), :'role') \gexec
SELECT format('GRANT SELECT, INSERT, UPDATE ON TABLE "leader_sidecar_leases" TO %I', :'role') \gexec

COMMIT;
