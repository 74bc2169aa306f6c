-- The embedded event stream (stream.db). One row per event, in global order.
-- position: the global position ($all order), assigned at commit, never reused.
-- stream_id: 'decision-<uuid>'; revision: 0-based position within that stream.
-- seq: the ledger index the event mirrors; one event per seq.
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id   TEXT    NOT NULL,
    revision    INTEGER NOT NULL CHECK (revision >= 0),
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    event_type  TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream_id, revision),
    UNIQUE (seq)
);

-- The stream is append-only: nothing updates or deletes an event.
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: DELETE refused');
END;

CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version);
