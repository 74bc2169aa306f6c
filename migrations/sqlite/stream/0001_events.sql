-- The embedded event stream, <data-dir>/stream.db (crates/stream, SqliteStream).
-- Applied once, in one transaction, by SqliteStream::open when schema_version is below 1.
-- The journal mode (WAL) and synchronous=FULL are set by the connection, not here: they are
-- not schema, and journal_mode cannot change inside a transaction.

-- One row per DecisionRecorded event, in global order.
CREATE TABLE events (
    -- The global position ($all order). AUTOINCREMENT: a position is never reused, even if
    -- the last row were ever removed, so a subscriber's saved cursor cannot point at new data.
    -- It costs nothing measurable (benches/sqlite_settings.rs): SQLite writes sqlite_sequence
    -- once per INSERT statement, not per row, and an append inserts its rows in a few
    -- multi-row statements.
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'decision-<uuid>', one stream per decision.
    stream_id   TEXT    NOT NULL CHECK (stream_id LIKE 'decision-%'),
    -- Place in the stream, from 0. A decision is recorded once, so always 0 today.
    revision    INTEGER NOT NULL CHECK (revision >= 0),
    -- The ledger index this event mirrors: one event per seq, no holes.
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    event_type  TEXT    NOT NULL CHECK (event_type = 'DecisionRecorded'),
    -- record_bytes: the record's canonical (RFC 8785) bytes, exactly as the ledger holds them.
    data        BLOB    NOT NULL,
    -- {"leaf_hash":"<base64 SHA-256(0x00 || data)>","seq":"<seq>"}
    metadata    TEXT    NOT NULL,
    -- When this store committed the event, RFC 3339 UTC (the record has its own recorded_at).
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream_id, revision),
    UNIQUE (seq)
);

-- The stream is append-only: an event, once written, is never changed or removed, by this
-- code or by anyone with the file. (Rebuilding a damaged stream means a new file.)
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;

-- Which migrations have been applied; the opener refuses a version it does not know.
CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT    NOT NULL
);
