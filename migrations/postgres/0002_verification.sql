-- The cross-verifier's reports and the auditors' reviews of proposed repairs, PostgreSQL
-- (crates/projection/src/postgres/reports.rs; described in crates/projection/README.md).
--
-- One row in `verification_reports` per verifier run, its discrepancies and actions in their
-- own tables (positions keep the report's order), and one row in `verification_reviews` per
-- auditor verdict. The report's canonical JSON is kept in `body` byte for byte (the verifier's
-- digest covers exactly those bytes): `text`, checked to parse as JSON, not `jsonb`, which
-- rewrites what it stores. The rows beside it are what auditors query.
--
-- Conventions of 0001: ids are `uuid`; hashes are 32 raw bytes; times are a `timestamptz`
-- floored to the microsecond plus `*_extra_ns`, the nanoseconds within it; absent optional
-- values are NULL and CHECKs refuse '' so there is one spelling. Names (class, store, kind,
-- mode, status, …) are the verifier's, stored as given: 1 to 64 bytes.
--
-- Foreign keys here, unlike approvals and attachments: a report is written once per run, not
-- ~28,000 times a second, and a review must name an action that exists.
--
-- Append-only like the governance tables: triggers refuse UPDATE, DELETE and TRUNCATE for
-- every role, the owner included, with no exception (nothing repairs a report). Roles as in
-- 0001: triplicate_writer SELECT and INSERT, triplicate_reader SELECT.

CREATE TABLE verification_reports (
    run_id                uuid        PRIMARY KEY,
    mode                  text        NOT NULL CHECK (octet_length(mode) BETWEEN 1 AND 64),
    started_at            timestamptz NOT NULL,
    started_at_extra_ns   smallint    NOT NULL CHECK (started_at_extra_ns BETWEEN 0 AND 999),
    finished_at           timestamptz NOT NULL,
    finished_at_extra_ns  smallint    NOT NULL CHECK (finished_at_extra_ns BETWEEN 0 AND 999),
    -- NULL when the run found nothing.
    worst_class           text        CHECK (octet_length(worst_class) BETWEEN 1 AND 64),
    lag                   bigint      NOT NULL CHECK (lag >= 0),
    minor                 bigint      NOT NULL CHECK (minor >= 0),
    major                 bigint      NOT NULL CHECK (major >= 0),
    critical              bigint      NOT NULL CHECK (critical >= 0),
    records_compared      bigint      NOT NULL CHECK (records_compared >= 0),
    checkpoint_size       bigint      CHECK (checkpoint_size >= 0),
    checkpoint_root       bytea       CHECK (length(checkpoint_root) = 32),
    digest                bytea       NOT NULL CHECK (length(digest) = 32),
    body                  text        NOT NULL CHECK (body::json IS NOT NULL),
    audit_seq             bigint      CHECK (audit_seq >= 0),
    stored_at             timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE verification_reports IS
    'One row per cross-verifier run. Append-only.';
COMMENT ON COLUMN verification_reports.body IS
    'The report''s canonical JSON exactly as the verifier digested it (text, not jsonb: kept byte for byte). Query it as body::jsonb.';
COMMENT ON COLUMN verification_reports.started_at_extra_ns IS
    'Nanoseconds within the microsecond of started_at (0-999): together the exact instant.';

CREATE TABLE verification_discrepancies (
    run_id        uuid     NOT NULL REFERENCES verification_reports (run_id),
    -- The discrepancy's index in the report.
    position      integer  NOT NULL CHECK (position >= 0),
    seq           bigint   CHECK (seq >= 0),
    decision_id   uuid,
    store         text     NOT NULL CHECK (octet_length(store) BETWEEN 1 AND 64),
    class         text     NOT NULL CHECK (octet_length(class) BETWEEN 1 AND 64),
    kind          text     NOT NULL CHECK (octet_length(kind) BETWEEN 1 AND 64),
    expected_hash bytea    CHECK (length(expected_hash) = 32),
    actual_hash   bytea    CHECK (length(actual_hash) = 32),
    file          text     CHECK (file <> ''),
    detail        text     NOT NULL,
    PRIMARY KEY (run_id, position)
);
CREATE INDEX verification_discrepancies_class ON verification_discrepancies (class);
CREATE INDEX verification_discrepancies_seq ON verification_discrepancies (seq);

CREATE TABLE verification_actions (
    action_id uuid     PRIMARY KEY,
    run_id    uuid     NOT NULL REFERENCES verification_reports (run_id),
    -- The action's index in the report.
    position  integer  NOT NULL CHECK (position >= 0),
    seq       bigint   CHECK (seq >= 0),
    seqs      bigint[] NOT NULL
        CHECK (cardinality(seqs) = 0
               OR (array_ndims(seqs) = 1 AND array_position(seqs, NULL) IS NULL AND 0 <= ALL (seqs))),
    store     text     NOT NULL CHECK (octet_length(store) BETWEEN 1 AND 64),
    class     text     NOT NULL CHECK (octet_length(class) BETWEEN 1 AND 64),
    kind      text     NOT NULL CHECK (octet_length(kind) BETWEEN 1 AND 64),
    operation text     NOT NULL CHECK (octet_length(operation) BETWEEN 1 AND 64),
    -- 'automatic' or 'auditor'.
    authority text     NOT NULL CHECK (octet_length(authority) BETWEEN 1 AND 64),
    -- As of the run: planned, proposed, applied, unchanged, failed.
    status    text     NOT NULL CHECK (octet_length(status) BETWEEN 1 AND 64),
    restores  bytea    CHECK (length(restores) = 32),
    detail    text     NOT NULL
);
-- An action's run, and the report's actions in order.
CREATE UNIQUE INDEX verification_actions_run ON verification_actions (run_id, position);

CREATE TABLE verification_reviews (
    review_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action_id          uuid        NOT NULL REFERENCES verification_actions (action_id),
    verdict            text        NOT NULL CHECK (verdict IN ('approved', 'rejected')),
    key_id             text        NOT NULL CHECK (octet_length(key_id) BETWEEN 1 AND 64),
    alg                text        NOT NULL CHECK (octet_length(alg) BETWEEN 1 AND 64),
    signature          bytea       NOT NULL CHECK (length(signature) > 0),
    signed_at          timestamptz NOT NULL,
    signed_at_extra_ns smallint    NOT NULL CHECK (signed_at_extra_ns BETWEEN 0 AND 999),
    reason             text        NOT NULL,
    -- What executing an approval did ('applied: …', 'failed: …'); NULL before that.
    outcome            text        CHECK (outcome <> ''),
    recorded_at        timestamptz NOT NULL,
    recorded_at_extra_ns smallint  NOT NULL CHECK (recorded_at_extra_ns BETWEEN 0 AND 999)
);
CREATE INDEX verification_reviews_action ON verification_reviews (action_id);

-- The guard: nothing changes or removes a report, a row of one, or a review. Unlike
-- triplicate_refuse_change() in 0001 there is no repair exception.
CREATE FUNCTION triplicate_refuse_report_change() RETURNS trigger
LANGUAGE plpgsql AS $guard$
BEGIN
    RAISE EXCEPTION 'triplicate: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'verification reports and reviews are append-only';
END
$guard$;

CREATE TRIGGER verification_reports_append_only BEFORE UPDATE OR DELETE ON verification_reports
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_reports_no_truncate BEFORE TRUNCATE ON verification_reports
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_discrepancies_append_only BEFORE UPDATE OR DELETE ON verification_discrepancies
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_discrepancies_no_truncate BEFORE TRUNCATE ON verification_discrepancies
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_actions_append_only BEFORE UPDATE OR DELETE ON verification_actions
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_actions_no_truncate BEFORE TRUNCATE ON verification_actions
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_reviews_append_only BEFORE UPDATE OR DELETE ON verification_reviews
    FOR EACH ROW EXECUTE FUNCTION triplicate_refuse_report_change();
CREATE TRIGGER verification_reviews_no_truncate BEFORE TRUNCATE ON verification_reviews
    FOR EACH STATEMENT EXECUTE FUNCTION triplicate_refuse_report_change();

-- Privileges, as 0001 grants them. The identity column of verification_reviews needs no grant
-- on its sequence: an identity default does not check sequence privileges, so the writer can
-- insert reviews without being able to call nextval() itself.
REVOKE ALL ON verification_reports, verification_discrepancies, verification_actions,
              verification_reviews FROM PUBLIC;
GRANT SELECT ON verification_reports, verification_discrepancies, verification_actions,
                verification_reviews TO triplicate_reader, triplicate_writer;
GRANT INSERT ON verification_reports, verification_discrepancies, verification_actions,
                verification_reviews TO triplicate_writer;
