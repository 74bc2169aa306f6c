-- Recovery drills' signed reports, embedded SQLite (crates/projection/src/sqlite/drills.rs;
-- described in crates/projection/README.md). Applied by the projection's migration runner
-- (PRAGMA user_version 3 -> 4).
--
-- The same table as migrations/postgres/0004_drills.sql, in SQLite's own terms, with the
-- conventions of 0002: a STRICT table; the id as canonical UUID text, whose text order is the
-- UUIDs' byte order (UUIDv7: newest last); hashes as 32-byte BLOBs; times as Unix seconds plus
-- nanoseconds; names 1 to 64 bytes; booleans as 0 or 1. The report's canonical JSON is kept in
-- `body` byte for byte, checked with json_valid(), beside the notary's signature over it.
--
-- Append-only: triggers refuse UPDATE and DELETE always (nothing repairs a drill's report, so
-- there is no guard function here).

CREATE TABLE drill_reports (
    drill_id           TEXT    PRIMARY KEY CHECK (length(drill_id) = 36),
    scenario           TEXT    NOT NULL CHECK (length(CAST(scenario AS BLOB)) BETWEEN 1 AND 64),
    started_at_s       INTEGER NOT NULL,
    started_at_ns      INTEGER NOT NULL CHECK (started_at_ns BETWEEN 0 AND 999999999),
    finished_at_s      INTEGER NOT NULL,
    finished_at_ns     INTEGER NOT NULL CHECK (finished_at_ns BETWEEN 0 AND 999999999),
    passed             INTEGER NOT NULL CHECK (passed IN (0, 1)),
    -- 1 when the drill damaged the live stores rather than a copy.
    in_place           INTEGER NOT NULL CHECK (in_place IN (0, 1)),
    records_before     INTEGER NOT NULL CHECK (records_before >= 0),
    records_after      INTEGER NOT NULL CHECK (records_after >= 0),
    -- NULL when the damage was not detected.
    detect_ms          INTEGER CHECK (detect_ms IS NULL OR detect_ms >= 0),
    recover_ms         INTEGER NOT NULL CHECK (recover_ms >= 0),
    discrepancies_left INTEGER NOT NULL CHECK (discrepancies_left >= 0),
    digest             BLOB    NOT NULL CHECK (length(digest) = 32),
    -- The notary's key, algorithm and signature.
    key_id             TEXT    NOT NULL CHECK (length(CAST(key_id AS BLOB)) BETWEEN 1 AND 64),
    alg                TEXT    NOT NULL CHECK (length(CAST(alg AS BLOB)) BETWEEN 1 AND 64),
    signature          BLOB    NOT NULL CHECK (length(signature) BETWEEN 1 AND 512),
    body               TEXT    NOT NULL CHECK (json_valid(body)),
    -- The seq of the ledger record that carries the digest, if any.
    audit_seq          INTEGER CHECK (audit_seq IS NULL OR audit_seq >= 0),
    -- When the projection stored it (RFC 3339 UTC).
    stored_at          TEXT    NOT NULL
) STRICT;
-- A scenario's drills, newest first (listing by scenario; each scenario's newest drill).
CREATE INDEX drill_reports_scenario ON drill_reports (scenario, drill_id);
-- A scenario's passed drills, newest first (each scenario's newest passed drill). Queries
-- must say `passed = 1` for the planner to use it.
CREATE INDEX drill_reports_passed ON drill_reports (scenario, drill_id) WHERE passed = 1;

-- The guard: UPDATE and DELETE are refused always, on every connection.
CREATE TRIGGER drill_reports_no_update BEFORE UPDATE ON drill_reports
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on drill_reports refused: drill reports are append-only');
END;
CREATE TRIGGER drill_reports_no_delete BEFORE DELETE ON drill_reports
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on drill_reports refused: drill reports are append-only');
END;
