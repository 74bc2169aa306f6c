-- Recovery drills' signed reports, PostgreSQL (crates/projection/src/postgres/drills.rs;
-- described in crates/projection/README.md).
--
-- One row per drill. The report's canonical JSON is kept in `body` byte for byte (the caller's
-- digest covers exactly those bytes, and the notary's signature is kept beside it): `text`,
-- checked to parse as JSON, not `jsonb`, which rewrites what it stores. The columns beside it
-- are what operators filter and alert on.
--
-- Conventions of 0001 and 0002: the id is a `uuid` (UUIDv7: newest last); hashes are 32 raw
-- bytes; times are a `timestamptz` floored to the microsecond plus `*_extra_ns`, the
-- nanoseconds within it; absent optional values are NULL. Names (scenario, key id, algorithm)
-- are the caller's, stored as given: 1 to 64 bytes.
--
-- Append-only like the verification tables: triggers refuse UPDATE, DELETE and TRUNCATE for
-- every role, the owner included, with no exception (nothing repairs a drill's report). Roles
-- as in 0001: triplicate_writer SELECT and INSERT, triplicate_reader SELECT.

CREATE TABLE drill_reports (
    drill_id             uuid        PRIMARY KEY,
    scenario             text        NOT NULL CHECK (octet_length(scenario) BETWEEN 1 AND 64),
    started_at           timestamptz NOT NULL,
    started_at_extra_ns  smallint    NOT NULL CHECK (started_at_extra_ns BETWEEN 0 AND 999),
    finished_at          timestamptz NOT NULL,
    finished_at_extra_ns smallint    NOT NULL CHECK (finished_at_extra_ns BETWEEN 0 AND 999),
    passed               boolean     NOT NULL,
    -- True when the drill damaged the live stores rather than a copy.
    in_place             boolean     NOT NULL,
    records_before       bigint      NOT NULL CHECK (records_before >= 0),
    records_after        bigint      NOT NULL CHECK (records_after >= 0),
    -- NULL when the damage was not detected.
    detect_ms            bigint      CHECK (detect_ms >= 0),
    recover_ms           bigint      NOT NULL CHECK (recover_ms >= 0),
    discrepancies_left   bigint      NOT NULL CHECK (discrepancies_left >= 0),
    digest               bytea       NOT NULL CHECK (length(digest) = 32),
    -- The notary's key, algorithm and signature.
    key_id               text        NOT NULL CHECK (octet_length(key_id) BETWEEN 1 AND 64),
    alg                  text        NOT NULL CHECK (octet_length(alg) BETWEEN 1 AND 64),
    signature            bytea       NOT NULL CHECK (length(signature) BETWEEN 1 AND 512),
    body                 text        NOT NULL CHECK (body::json IS NOT NULL),
    -- The seq of the ledger record that carries the digest, if any.
    audit_seq            bigint      CHECK (audit_seq >= 0),
    stored_at            timestamptz NOT NULL DEFAULT now()
);
-- A scenario's drills, newest first (listing by scenario; each scenario's newest drill).
CREATE INDEX drill_reports_scenario ON drill_reports (scenario, drill_id);
-- A scenario's passed drills, newest first (each scenario's newest passed drill).
CREATE INDEX drill_reports_passed ON drill_reports (scenario, drill_id) WHERE passed;

COMMENT ON TABLE drill_reports IS
    'One row per recovery drill, its report signed by the notary key. Append-only.';
COMMENT ON COLUMN drill_reports.body IS
    'The drill report''s canonical JSON exactly as digested and signed (text, not jsonb: kept byte for byte). Query it as body::jsonb.';
COMMENT ON COLUMN drill_reports.started_at_extra_ns IS
    'Nanoseconds within the microsecond of started_at (0-999): together the exact instant.';

-- The guard: nothing changes or removes a drill's report. Like
-- triplicate_refuse_report_change() in 0002 there is no repair exception.
CREATE FUNCTION triplicate_refuse_drill_change() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    RAISE EXCEPTION 'triplicate: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'drill reports are append-only';
END
$guard$;

CREATE TRIGGER drill_reports_append_only BEFORE UPDATE OR DELETE ON drill_reports
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_drill_change();
CREATE TRIGGER drill_reports_no_truncate BEFORE TRUNCATE ON drill_reports
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_drill_change();

-- Privileges, as 0001 and 0002 grant them.
REVOKE ALL ON drill_reports FROM PUBLIC;
GRANT SELECT ON drill_reports TO triplicate_reader, triplicate_writer;
GRANT INSERT ON drill_reports TO triplicate_writer;
