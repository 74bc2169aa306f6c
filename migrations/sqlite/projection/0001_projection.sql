-- Triplicate's SQL projection, embedded SQLite (`<data-dir>/projection.db`;
-- crates/projection/src/sqlite.rs; the schema is described in crates/projection/README.md).
-- Applied in one transaction by the projection's migration runner, which records the version
-- in `PRAGMA user_version`.
--
-- The same tables as the PostgreSQL schema, in SQLite's own terms:
--   * STRICT tables, so a value is stored with exactly the type it was given.
--   * Timestamps as Unix seconds plus nanoseconds (`*_s`, `*_ns`): exact, and ordered by the
--     pair.
--   * payload: the payload's RFC 8785 JSON text.
--   * ids as canonical UUID text.
-- Nothing stores a record's bytes or leaf hash: the verifier re-derives both from these columns.

CREATE TABLE decisions (
    seq              INTEGER PRIMARY KEY CHECK (seq BETWEEN 0 AND 9007199254740992),
    id               TEXT    NOT NULL UNIQUE CHECK (length(id) = 36),
    version          INTEGER NOT NULL CHECK (version >= 0),
    kind             TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    payload          TEXT    NOT NULL CHECK (json_valid(payload)),
    proposed_at_s    INTEGER NOT NULL,
    proposed_at_ns   INTEGER NOT NULL CHECK (proposed_at_ns BETWEEN 0 AND 999999999),
    recorded_at_s    INTEGER NOT NULL,
    recorded_at_ns   INTEGER NOT NULL CHECK (recorded_at_ns BETWEEN 0 AND 999999999),
    supersedes       TEXT    CHECK (supersedes IS NULL OR length(supersedes) = 36),
    notary_key_id    TEXT    NOT NULL,
    notary_alg       TEXT    NOT NULL,
    notary_signature BLOB    NOT NULL
) STRICT;

CREATE INDEX decisions_kind ON decisions (kind, seq);
CREATE INDEX decisions_recorded ON decisions (recorded_at_s, recorded_at_ns);
CREATE INDEX decisions_proposed ON decisions (proposed_at_s, proposed_at_ns);
CREATE INDEX decisions_supersedes ON decisions (supersedes) WHERE supersedes IS NOT NULL;

-- approvals.seq and attachments.seq name a decisions row; they are not declared as foreign
-- keys, for the reasons given in migrations/postgres/0001_projection.sql (and SQLite enforces
-- foreign keys only on connections that ask).
CREATE TABLE approvals (
    seq          INTEGER NOT NULL,
    -- The approval's index in the record's `approvals` array (canonical order is by key_id).
    position     INTEGER NOT NULL CHECK (position >= 0),
    key_id       TEXT    NOT NULL,
    alg          TEXT    NOT NULL,
    signature    BLOB    NOT NULL,
    signed_at_s  INTEGER NOT NULL,
    signed_at_ns INTEGER NOT NULL CHECK (signed_at_ns BETWEEN 0 AND 999999999),
    PRIMARY KEY (seq, position)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX approvals_key ON approvals (key_id, seq);

CREATE TABLE attachments (
    seq        INTEGER NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 0),
    sha256     BLOB    NOT NULL CHECK (length(sha256) = 32),
    media_type TEXT    NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    name       TEXT    CHECK (name <> ''),
    PRIMARY KEY (seq, position)
) STRICT, WITHOUT ROWID;

-- What the reconciler's repairs changed. Written only by the repair path; never changed.
CREATE TABLE repairs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    seq           INTEGER NOT NULL,
    old_leaf_hash BLOB    CHECK (old_leaf_hash IS NULL OR length(old_leaf_hash) = 32),
    new_leaf_hash BLOB    NOT NULL CHECK (length(new_leaf_hash) = 32),
    reason        TEXT    NOT NULL CHECK (reason <> ''),
    run_id        TEXT    NOT NULL CHECK (run_id <> ''),
    old_rows      TEXT    CHECK (old_rows IS NULL OR json_valid(old_rows)),
    repaired_at   TEXT    NOT NULL
) STRICT;
CREATE INDEX repairs_seq ON repairs (seq);

-- Words of the title: an FTS5 index over decisions.title (external content, kept in step by
-- the triggers below). unicode61 without removing diacritics, like PostgreSQL's 'simple'.
CREATE VIRTUAL TABLE decisions_title USING fts5 (
    title, content = 'decisions', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER decisions_title_insert AFTER INSERT ON decisions
BEGIN
    INSERT INTO decisions_title (rowid, title) VALUES (new.seq, new.title);
END;
CREATE TRIGGER decisions_title_delete AFTER DELETE ON decisions
BEGIN
    INSERT INTO decisions_title (decisions_title, rowid, title) VALUES ('delete', old.seq, old.title);
END;

-- The guard. UPDATE is refused always (a repair deletes and re-inserts). DELETE is allowed
-- only while `triplicate_repair_active()` returns 1: an application-defined function that the
-- projection registers on its writer connection and that returns 1 only during the repair
-- path. SQLite has no roles, and anyone who can write the file can drop a trigger; this guards
-- against mistakes, not an adversary. A connection without the function (the sqlite3 shell,
-- another program) cannot prepare an UPDATE or DELETE of these tables at all:
-- "no such function: triplicate_repair_active".
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on decisions refused: governance rows are append-only');
END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
    WHEN triplicate_repair_active() IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on decisions refused: only the repair path replaces rows');
END;
CREATE TRIGGER approvals_no_update BEFORE UPDATE ON approvals
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on approvals refused: governance rows are append-only');
END;
CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals
    WHEN triplicate_repair_active() IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on approvals refused: only the repair path replaces rows');
END;
CREATE TRIGGER attachments_no_update BEFORE UPDATE ON attachments
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on attachments refused: governance rows are append-only');
END;
CREATE TRIGGER attachments_no_delete BEFORE DELETE ON attachments
    WHEN triplicate_repair_active() IS NOT 1
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on attachments refused: only the repair path replaces rows');
END;
CREATE TRIGGER repairs_no_update BEFORE UPDATE ON repairs
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on repairs refused: the repair log is append-only');
END;
CREATE TRIGGER repairs_no_delete BEFORE DELETE ON repairs
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on repairs refused: the repair log is append-only');
END;
