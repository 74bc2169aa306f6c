-- Removing projection rows the ledger has no record for (crates/projection/src/postgres.rs,
-- `Projection::remove_from`): the reconciler's second way to change governance rows, after
-- triplicate_repair(). A seq the ledger lacks can only be a forgery or a leftover, and the
-- projection must stay a prefix of the ledger, so what is removed is a suffix: every seq from
-- p_from up. The caller checks, under the projection's writer lock, that the ledger holds
-- nothing at p_from; the rows' leaf hashes are computed in Rust (only Rust can re-derive
-- canonical bytes) and passed in, one per removed seq.

-- One row per removed seq, never changed: what was there, why, and which run decided it.
CREATE TABLE removals (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq           bigint      NOT NULL,
    -- NULL when the rows could not be re-derived into a record (damaged).
    old_leaf_hash bytea       CHECK (length(old_leaf_hash) = 32),
    reason        text        NOT NULL CHECK (reason <> ''),
    run_id        text        NOT NULL CHECK (run_id <> ''),
    old_rows      json        NOT NULL,
    removed_at    timestamptz NOT NULL DEFAULT now(),
    removed_by    name        NOT NULL DEFAULT session_user
);
CREATE INDEX removals_seq ON removals (seq);

CREATE TRIGGER removals_append_only BEFORE UPDATE OR DELETE ON removals
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_change();
CREATE TRIGGER removals_no_truncate BEFORE TRUNCATE ON removals
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_change();

-- The guard of 0001 lets DELETE through only with the `triplicate.repair` flag set inside a
-- SECURITY DEFINER function owned by the tables' owner; this is the second such function. It
-- refuses unless p_seqs is exactly the stored seqs from p_from up (so the caller's view and
-- the table agree), and returns how many seqs it removed.
CREATE FUNCTION triplicate_remove_from(
    p_from bigint, p_reason text, p_run_id text, p_seqs bigint[], p_old_leaf_hashes bytea[]
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $remove$
DECLARE
    v_stored bigint[];
    v_n      bigint;
BEGIN
    IF p_reason IS NULL OR p_reason = '' OR p_run_id IS NULL OR p_run_id = '' THEN
        RAISE EXCEPTION 'triplicate_remove_from: a reason and a run id are required';
    END IF;
    IF cardinality(p_seqs) IS DISTINCT FROM cardinality(p_old_leaf_hashes) THEN
        RAISE EXCEPTION 'triplicate_remove_from: one leaf hash per seq is required';
    END IF;
    SELECT coalesce(array_agg(seq ORDER BY seq), '{}') INTO v_stored
      FROM decisions WHERE seq >= p_from;
    IF v_stored IS DISTINCT FROM coalesce(p_seqs, '{}') THEN
        RAISE EXCEPTION 'triplicate_remove_from: the stored seqs from % are %, not %',
            p_from, v_stored, p_seqs;
    END IF;
    INSERT INTO removals (seq, old_leaf_hash, reason, run_id, old_rows)
    SELECT d.seq, u.h, p_reason, p_run_id,
           json_build_object(
               'decision', row_to_json(d),
               'approvals', (SELECT json_agg(a ORDER BY a.position) FROM approvals a WHERE a.seq = d.seq),
               'attachments', (SELECT json_agg(t ORDER BY t.position) FROM attachments t WHERE t.seq = d.seq))
      FROM decisions d
      JOIN unnest(p_seqs, p_old_leaf_hashes) AS u(s, h) ON u.s = d.seq;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    PERFORM pg_catalog.set_config('triplicate.repair', 'on', true);
    DELETE FROM attachments WHERE seq >= p_from;
    DELETE FROM approvals WHERE seq >= p_from;
    DELETE FROM decisions WHERE seq >= p_from;
    PERFORM pg_catalog.set_config('triplicate.repair', 'off', true);
    RETURN v_n;
END
$remove$;

DO $grants$
DECLARE
    s text := current_schema();
    f text := 'triplicate_remove_from(bigint, text, text, bigint[], bytea[])';
BEGIN
    EXECUTE format('ALTER FUNCTION %I.%s SET search_path = %I, pg_temp', s, f, s);
    EXECUTE format('REVOKE ALL ON FUNCTION %I.%s FROM PUBLIC', s, f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %I.%s TO triplicate_writer', s, f);
END
$grants$;

REVOKE ALL ON removals FROM PUBLIC;
GRANT SELECT ON removals TO triplicate_reader, triplicate_writer;
