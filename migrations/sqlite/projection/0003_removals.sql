-- Removing projection rows the ledger has no record for (crates/projection/src/sqlite.rs,
-- `Projection::remove_from`): a suffix of seqs, deleted through the repair path (the guard of
-- 0001 lets DELETE through only while `triplicate_repair_active()` returns 1), each removed seq
-- logged here with its rows as they were.
CREATE TABLE removals (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    seq           INTEGER NOT NULL,
    -- NULL when the rows could not be re-derived into a record (damaged).
    old_leaf_hash BLOB    CHECK (old_leaf_hash IS NULL OR length(old_leaf_hash) = 32),
    reason        TEXT    NOT NULL CHECK (reason <> ''),
    run_id        TEXT    NOT NULL CHECK (run_id <> ''),
    old_rows      TEXT    NOT NULL CHECK (json_valid(old_rows)),
    removed_at    TEXT    NOT NULL
) STRICT;
CREATE INDEX removals_seq ON removals (seq);
CREATE TRIGGER removals_no_update BEFORE UPDATE ON removals
BEGIN
    SELECT RAISE(ABORT, 'triplicate: UPDATE on removals refused: the removal log is append-only');
END;
CREATE TRIGGER removals_no_delete BEFORE DELETE ON removals
BEGIN
    SELECT RAISE(ABORT, 'triplicate: DELETE on removals refused: the removal log is append-only');
END;
