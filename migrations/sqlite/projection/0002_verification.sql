-- The cross-verifier's reports and the auditors' reviews of proposed repairs, embedded SQLite
-- (crates/projection/src/sqlite/reports.rs; described in crates/projection/README.md).
-- Applied by the projection's migration runner (PRAGMA user_version 1 -> 2).
--
-- The same tables as migrations/postgres/0002_verification.sql, in SQLite's own terms (STRICT
-- tables; ids as canonical UUID text, whose text order is the UUIDs' byte order; hashes as
-- 32-byte BLOBs; times as Unix seconds plus nanoseconds; names 1 to 64 bytes). The report's
-- canonical JSON is kept in `body` byte for byte, checked with json_valid(). An action's
-- `seqs` is a JSON array of integers (query it with json_each).
--
-- Foreign keys are declared and enforced: the projection's writer connection turns on
-- PRAGMA foreign_keys. Append-only: triggers refuse UPDATE and DELETE always (nothing repairs
-- a report, so there is no guard function here).

CREATE TABLE verification_reports (
    run_id           TEXT    PRIMARY KEY CHECK (length(run_id) = 36),
    mode             TEXT    NOT NULL CHECK (length(CAST(mode AS BLOB)) BETWEEN 1 AND 64),
    started_at_s     INTEGER NOT NULL,
    started_at_ns    INTEGER NOT NULL CHECK (started_at_ns BETWEEN 0 AND 999999999),
    finished_at_s    INTEGER NOT NULL,
    finished_at_ns   INTEGER NOT NULL CHECK (finished_at_ns BETWEEN 0 AND 999999999),
    -- NULL when the run found nothing.
    worst_class      TEXT    CHECK (worst_class IS NULL
                                    OR length(CAST(worst_class AS BLOB)) BETWEEN 1 AND 64),
    lag              INTEGER NOT NULL CHECK (lag >= 0),
    minor            INTEGER NOT NULL CHECK (minor >= 0),
    major            INTEGER NOT NULL CHECK (major >= 0),
    critical         INTEGER NOT NULL CHECK (critical >= 0),
    records_compared INTEGER NOT NULL CHECK (records_compared >= 0),
    checkpoint_size  INTEGER CHECK (checkpoint_size IS NULL OR checkpoint_size >= 0),
    checkpoint_root  BLOB    CHECK (checkpoint_root IS NULL OR length(checkpoint_root) = 32),
    digest           BLOB    NOT NULL CHECK (length(digest) = 32),
    body             TEXT    NOT NULL CHECK (json_valid(body)),
    audit_seq        INTEGER CHECK (audit_seq IS NULL OR audit_seq >= 0),
    -- When the projection stored it (RFC 3339 UTC).
    stored_at        TEXT    NOT NULL
) STRICT;

CREATE TABLE verification_discrepancies (
    run_id        TEXT    NOT NULL REFERENCES verification_reports (run_id),
    -- The discrepancy's index in the report.
    position      INTEGER NOT NULL CHECK (position >= 0),
    seq           INTEGER CHECK (seq IS NULL OR seq >= 0),
    decision_id   TEXT    CHECK (decision_id IS NULL OR length(decision_id) = 36),
    store         TEXT    NOT NULL CHECK (length(CAST(store AS BLOB)) BETWEEN 1 AND 64),
    class         TEXT    NOT NULL CHECK (length(CAST(class AS BLOB)) BETWEEN 1 AND 64),
    kind          TEXT    NOT NULL CHECK (length(CAST(kind AS BLOB)) BETWEEN 1 AND 64),
    expected_hash BLOB    CHECK (expected_hash IS NULL OR length(expected_hash) = 32),
    actual_hash   BLOB    CHECK (actual_hash IS NULL OR length(actual_hash) = 32),
    file          TEXT    CHECK (file <> ''),
    detail        TEXT    NOT NULL,
    PRIMARY KEY (run_id, position)
) STRICT, WITHOUT ROWID;
CREATE INDEX verification_discrepancies_class ON verification_discrepancies (class);
CREATE INDEX verification_discrepancies_seq ON verification_discrepancies (seq);

CREATE TABLE verification_actions (
    action_id TEXT    PRIMARY KEY CHECK (length(action_id) = 36),
    run_id    TEXT    NOT NULL REFERENCES verification_reports (run_id),
    -- The action's index in the report.
    position  INTEGER NOT NULL CHECK (position >= 0),
    seq       INTEGER CHECK (seq IS NULL OR seq >= 0),
    -- A JSON array of seqs, e.g. [12,13].
    seqs      TEXT    NOT NULL CHECK (json_valid(seqs) AND json_type(seqs) = 'array'),
    store     TEXT    NOT NULL CHECK (length(CAST(store AS BLOB)) BETWEEN 1 AND 64),
    class     TEXT    NOT NULL CHECK (length(CAST(class AS BLOB)) BETWEEN 1 AND 64),
    kind      TEXT    NOT NULL CHECK (length(CAST(kind AS BLOB)) BETWEEN 1 AND 64),
    operation TEXT    NOT NULL CHECK (length(CAST(operation AS BLOB)) BETWEEN 1 AND 64),
    -- 'automatic' or 'auditor'.
    authority TEXT    NOT NULL CHECK (length(CAST(authority AS BLOB)) BETWEEN 1 AND 64),
    -- As of the run: planned, proposed, applied, unchanged, failed.
    status    TEXT    NOT NULL CHECK (length(CAST(status AS BLOB)) BETWEEN 1 AND 64),
    restores  BLOB    CHECK (restores IS NULL OR length(restores) = 32),
    detail    TEXT    NOT NULL
) STRICT;
-- An action's run, and the report's actions in order.
CREATE UNIQUE INDEX verification_actions_run ON verification_actions (run_id, position);

CREATE TABLE verification_reviews (
    review_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id      TEXT    NOT NULL REFERENCES verification_actions (action_id),
    verdict        TEXT    NOT NULL CHECK (verdict IN ('approved', 'rejected')),
    key_id         TEXT    NOT NULL CHECK (length(CAST(key_id AS BLOB)) BETWEEN 1 AND 64),
    alg            TEXT    NOT NULL CHECK (length(CAST(alg AS BLOB)) BETWEEN 1 AND 64),
    signature      BLOB    NOT NULL CHECK (length(signature) > 0),
    signed_at_s    INTEGER NOT NULL,
    signed_at_ns   INTEGER NOT NULL CHECK (signed_at_ns BETWEEN 0 AND 999999999),
    reason         TEXT    NOT NULL,
    -- What executing an approval did ('applied: …', 'failed: …'); NULL before that.
    outcome        TEXT    CHECK (outcome <> ''),
    recorded_at_s  INTEGER NOT NULL,
    recorded_at_ns INTEGER NOT NULL CHECK (recorded_at_ns BETWEEN 0 AND 999999999)
) STRICT;
CREATE INDEX verification_reviews_action ON verification_reviews (action_id);

-- The guard: UPDATE and DELETE are refused always, on every connection.
CREATE TRIGGER verification_reports_no_update BEFORE UPDATE ON verification_reports
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on verification_reports refused: reports are append-only');
END;
CREATE TRIGGER verification_reports_no_delete BEFORE DELETE ON verification_reports
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on verification_reports refused: reports are append-only');
END;
CREATE TRIGGER verification_discrepancies_no_update BEFORE UPDATE ON verification_discrepancies
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on verification_discrepancies refused: reports are append-only');
END;
CREATE TRIGGER verification_discrepancies_no_delete BEFORE DELETE ON verification_discrepancies
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on verification_discrepancies refused: reports are append-only');
END;
CREATE TRIGGER verification_actions_no_update BEFORE UPDATE ON verification_actions
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on verification_actions refused: reports are append-only');
END;
CREATE TRIGGER verification_actions_no_delete BEFORE DELETE ON verification_actions
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on verification_actions refused: reports are append-only');
END;
CREATE TRIGGER verification_reviews_no_update BEFORE UPDATE ON verification_reviews
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on verification_reviews refused: reviews are append-only');
END;
CREATE TRIGGER verification_reviews_no_delete BEFORE DELETE ON verification_reviews
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on verification_reviews refused: reviews are append-only');
END;
