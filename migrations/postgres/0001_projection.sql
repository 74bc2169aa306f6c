-- Triplicate's SQL projection, PostgreSQL (crates/projection/src/postgres.rs; the schema is
-- described in crates/projection/README.md).
--
-- One row in `decisions` per ledger record, its approvals and attachments in their own tables.
-- Nothing here stores a record's bytes or leaf hash: the verifier re-derives both from these
-- columns, so every column that feeds the canonical bytes is kept exactly:
--   * timestamps: `timestamptz` holds microseconds, records carry nanoseconds, so each time is a
--     `timestamptz` (floored to the microsecond, for queries and people) plus `*_extra_ns`, the
--     nanoseconds within that microsecond (0-999). Together they are the exact instant.
--   * payload: `json`, not `jsonb`. It holds the payload's RFC 8785 text as written; `jsonb`
--     cannot hold the string "\u0000", which a valid payload may contain.
--   * absent and empty optional fields are one thing in a record (omitted), so here they are
--     NULL (`supersedes`, an attachment's `name`) or no rows (attachments); CHECKs refuse the
--     empty string so there is only one spelling.
--
-- Roles (cluster-wide, so created only if missing; tolerant of another database's migration
-- creating them at the same moment):
--   triplicate_writer: SELECT and INSERT (the write path), EXECUTE triplicate_repair().
--   triplicate_reader: SELECT only.
-- Neither holds UPDATE, DELETE or TRUNCATE. Triggers refuse UPDATE, DELETE and TRUNCATE for
-- every role, the owner included; the one exception is DELETE inside triplicate_repair().

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'triplicate_writer') THEN
        BEGIN
            CREATE ROLE triplicate_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by a migration of another database
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'triplicate_reader') THEN
        BEGIN
            CREATE ROLE triplicate_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$roles$;

CREATE TABLE decisions (
    seq                  bigint      PRIMARY KEY CHECK (seq BETWEEN 0 AND 9007199254740992),
    id                   uuid        NOT NULL UNIQUE,
    version              integer     NOT NULL CHECK (version >= 0),
    kind                 text        NOT NULL,
    title                text        NOT NULL,
    body                 text        NOT NULL,
    payload              json        NOT NULL,
    proposed_at          timestamptz NOT NULL
        CHECK (proposed_at BETWEEN '0001-01-01 00:00:00+00 BC' AND '9999-12-31 23:59:59.999999+00'),
    proposed_at_extra_ns smallint    NOT NULL CHECK (proposed_at_extra_ns BETWEEN 0 AND 999),
    recorded_at          timestamptz NOT NULL
        CHECK (recorded_at BETWEEN '0001-01-01 00:00:00+00 BC' AND '9999-12-31 23:59:59.999999+00'),
    recorded_at_extra_ns smallint    NOT NULL CHECK (recorded_at_extra_ns BETWEEN 0 AND 999),
    supersedes           uuid,
    notary_key_id        text        NOT NULL,
    notary_alg           text        NOT NULL,
    notary_signature     bytea       NOT NULL
);

COMMENT ON TABLE decisions IS
    'One row per ledger record (seq). Append-only: changed only by triplicate_repair().';
COMMENT ON COLUMN decisions.payload IS
    'The payload object as RFC 8785 JSON text (json, not jsonb: jsonb cannot hold \u0000).';
COMMENT ON COLUMN decisions.recorded_at_extra_ns IS
    'Nanoseconds within the microsecond of recorded_at (0-999): together the exact instant.';

-- The queries readers make (crates/projection/src/query.rs): newest first by seq, filtered by
-- kind, recording or proposal time, supersession, words of the title, approver.
CREATE INDEX decisions_kind ON decisions (kind, seq);
CREATE INDEX decisions_recorded ON decisions (recorded_at, recorded_at_extra_ns);
CREATE INDEX decisions_proposed ON decisions (proposed_at, proposed_at_extra_ns);
CREATE INDEX decisions_supersedes ON decisions (supersedes) WHERE supersedes IS NOT NULL;
-- 'simple': no stemming or stop words, so a search means "these words appear", in any language.
CREATE INDEX decisions_title_words ON decisions USING gin (to_tsvector('simple'::regconfig, title));

-- approvals.seq and attachments.seq name a decisions row but are not declared as foreign keys:
-- the check costs ~4.6 µs per approval row (a quarter of an apply's server time, measured),
-- while the only writers insert the decision first in the same transaction, the triggers
-- forbid deletes, and re-derivation reads these rows only through their decision, so a stray
-- row either changes a record's re-derived hash (and the verifier sees it) or belongs to no
-- record at all.
CREATE TABLE approvals (
    seq                bigint      NOT NULL,
    -- The approval's index in the record's `approvals` array (canonical order is by key_id).
    position           smallint    NOT NULL CHECK (position >= 0),
    key_id             text        NOT NULL,
    alg                text        NOT NULL,
    signature          bytea       NOT NULL,
    signed_at          timestamptz NOT NULL
        CHECK (signed_at BETWEEN '0001-01-01 00:00:00+00 BC' AND '9999-12-31 23:59:59.999999+00'),
    signed_at_extra_ns smallint    NOT NULL CHECK (signed_at_extra_ns BETWEEN 0 AND 999),
    PRIMARY KEY (seq, position)
);
-- "Decisions this key approved", and one approval per key per record.
CREATE UNIQUE INDEX approvals_key ON approvals (key_id, seq);

CREATE TABLE attachments (
    seq        bigint   NOT NULL,
    position   smallint NOT NULL CHECK (position >= 0),
    sha256     bytea    NOT NULL CHECK (length(sha256) = 32),
    media_type text     NOT NULL,
    size       bigint   NOT NULL CHECK (size >= 0),
    name       text     CHECK (name <> ''),
    PRIMARY KEY (seq, position)
);

-- What the reconciler's repairs changed. Written only by triplicate_repair(); never changed.
CREATE TABLE repairs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq           bigint      NOT NULL,
    -- NULL when the seq had no rows (a repair that restores a missing record).
    old_leaf_hash bytea       CHECK (length(old_leaf_hash) = 32),
    new_leaf_hash bytea       NOT NULL CHECK (length(new_leaf_hash) = 32),
    reason        text        NOT NULL CHECK (reason <> ''),
    run_id        text        NOT NULL CHECK (run_id <> ''),
    -- The rows as the function found them (decision, approvals, attachments), NULL if none.
    old_rows      json,
    repaired_at   timestamptz NOT NULL DEFAULT now(),
    -- The login role that called the function (current_user inside it is the owner).
    repaired_by   name        NOT NULL DEFAULT session_user
);
CREATE INDEX repairs_seq ON repairs (seq);

-- The guard. UPDATE and TRUNCATE are refused always (a repair deletes and re-inserts). DELETE
-- is allowed only inside triplicate_repair(), which (1) runs as the owner of these tables
-- (SECURITY DEFINER) and (2) sets the transaction-local setting `triplicate.repair` to 'on'.
-- Any role may set a custom setting, so (2) alone would prove nothing; (1) is what a writer or
-- reader can never have, since inside their own sessions current_user is themselves. The owner
-- itself is refused unless it sets the flag, so its accidental DELETEs are caught too.
CREATE FUNCTION triplicate_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    IF TG_OP = 'DELETE'
       AND TG_TABLE_NAME <> 'repairs'
       AND current_setting('triplicate.repair', true) = 'on'
       AND current_user = (SELECT pg_catalog.pg_get_userbyid(relowner)
                             FROM pg_catalog.pg_class WHERE oid = TG_RELID)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'triplicate: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'governance rows are append-only; only triplicate_repair() replaces them';
END
$guard$;

CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER approvals_append_only BEFORE UPDATE OR DELETE ON approvals
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER approvals_no_truncate BEFORE TRUNCATE ON approvals
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER attachments_append_only BEFORE UPDATE OR DELETE ON attachments
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER attachments_no_truncate BEFORE TRUNCATE ON attachments
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER repairs_append_only BEFORE UPDATE OR DELETE ON repairs
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER repairs_no_truncate BEFORE TRUNCATE ON repairs
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_change();

-- The reconciler's one way to change a record's rows: replace everything stored at p_seq with
-- the given columns and log it. The caller (crates/projection/src/postgres.rs) parses and
-- validates the new record, computes both leaf hashes (only Rust can re-derive canonical
-- bytes), and holds the projection's writer lock. The function captures the old rows itself.
CREATE FUNCTION triplicate_repair(
    p_seq bigint, p_old_leaf_hash bytea, p_new_leaf_hash bytea, p_reason text, p_run_id text,
    p_id uuid, p_version integer, p_kind text, p_title text, p_body text, p_payload json,
    p_proposed_at timestamptz, p_proposed_at_extra_ns smallint,
    p_recorded_at timestamptz, p_recorded_at_extra_ns smallint, p_supersedes uuid,
    p_notary_key_id text, p_notary_alg text, p_notary_signature bytea,
    p_approval_key_ids text[], p_approval_algs text[], p_approval_signatures bytea[],
    p_approval_signed_at timestamptz[], p_approval_signed_at_extra_ns smallint[],
    p_attachment_sha256 bytea[], p_attachment_media_types text[], p_attachment_sizes bigint[],
    p_attachment_names text[]
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $repair$
DECLARE
    v_old  json;
    v_id   bigint;
BEGIN
    IF p_reason IS NULL OR p_reason = '' OR p_run_id IS NULL OR p_run_id = '' THEN
        RAISE EXCEPTION 'triplicate_repair: a reason and a run id are required';
    END IF;
    SELECT json_build_object(
               'decision', row_to_json(d),
               'approvals', (SELECT json_agg(a ORDER BY a.position) FROM approvals a WHERE a.seq = p_seq),
               'attachments', (SELECT json_agg(t ORDER BY t.position) FROM attachments t WHERE t.seq = p_seq))
      INTO v_old
      FROM decisions d WHERE d.seq = p_seq;

    PERFORM pg_catalog.set_config('triplicate.repair', 'on', true);
    DELETE FROM attachments WHERE seq = p_seq;
    DELETE FROM approvals WHERE seq = p_seq;
    DELETE FROM decisions WHERE seq = p_seq;
    PERFORM pg_catalog.set_config('triplicate.repair', 'off', true);

    INSERT INTO decisions (seq, id, version, kind, title, body, payload,
                           proposed_at, proposed_at_extra_ns, recorded_at, recorded_at_extra_ns,
                           supersedes, notary_key_id, notary_alg, notary_signature)
    VALUES (p_seq, p_id, p_version, p_kind, p_title, p_body, p_payload,
            p_proposed_at, p_proposed_at_extra_ns, p_recorded_at, p_recorded_at_extra_ns,
            p_supersedes, p_notary_key_id, p_notary_alg, p_notary_signature);
    INSERT INTO approvals (seq, position, key_id, alg, signature, signed_at, signed_at_extra_ns)
    SELECT p_seq, (u.o - 1)::smallint, u.k, u.a, u.s, u.t, u.n
      FROM unnest(p_approval_key_ids, p_approval_algs, p_approval_signatures,
                  p_approval_signed_at, p_approval_signed_at_extra_ns)
           WITH ORDINALITY AS u(k, a, s, t, n, o);
    INSERT INTO attachments (seq, position, sha256, media_type, size, name)
    SELECT p_seq, (u.o - 1)::smallint, u.h, u.m, u.z, u.nm
      FROM unnest(p_attachment_sha256, p_attachment_media_types, p_attachment_sizes,
                  p_attachment_names)
           WITH ORDINALITY AS u(h, m, z, nm, o);

    INSERT INTO repairs (seq, old_leaf_hash, new_leaf_hash, reason, run_id, old_rows)
    VALUES (p_seq, p_old_leaf_hash, p_new_leaf_hash, p_reason, p_run_id, v_old)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$repair$;

-- Privileges. PostgreSQL grants EXECUTE on new functions to PUBLIC; take it back. A SECURITY
-- DEFINER function pins its search_path (to this schema, then pg_temp last) so a caller cannot
-- shadow the tables it names.
DO $grants$
DECLARE
    s text := current_schema();
    f text := 'triplicate_repair(bigint, bytea, bytea, text, text, uuid, integer, text, text, '
              'text, json, timestamptz, smallint, timestamptz, smallint, uuid, text, text, '
              'bytea, text[], text[], bytea[], timestamptz[], smallint[], bytea[], text[], '
              'bigint[], text[])';
BEGIN
    EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', s, f, s);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.%s FROM PUBLIC', s, f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.%s TO triplicate_writer', s, f);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO triplicate_writer, triplicate_reader', s);
END
$grants$;

REVOKE ALL ON decisions, approvals, attachments, repairs FROM PUBLIC;
GRANT SELECT ON decisions, approvals, attachments, repairs TO triplicate_reader, triplicate_writer;
GRANT INSERT ON decisions, approvals, attachments TO triplicate_writer;
