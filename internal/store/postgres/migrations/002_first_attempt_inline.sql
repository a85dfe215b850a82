-- A delivery's first attempt is kept in its own row, as the SQLite store
-- keeps it (its migration 003): a delivery that succeeds first time, most
-- of them, is then written as one row update instead of an update plus an
-- attempts row with its index entry and foreign-key check
-- (docs/benchmarks.md, item 19). Later attempts stay in attempts.
-- first_started_at is NULL until the first attempt is recorded. Adding
-- columns with constant defaults rewrites nothing; the UPDATE below
-- rewrites each delivery that has attempts once.
ALTER TABLE deliveries
    ADD COLUMN first_started_at    timestamptz,
    ADD COLUMN first_status_code   integer NOT NULL DEFAULT 0,
    ADD COLUMN first_latency       bigint  NOT NULL DEFAULT 0,
    ADD COLUMN first_error         text    NOT NULL DEFAULT '',
    ADD COLUMN first_response_body bytea   NOT NULL DEFAULT '';

UPDATE deliveries d SET
    first_started_at = a.started_at, first_status_code = a.status_code,
    first_latency = a.latency, first_error = a.error, first_response_body = a.response_body
FROM attempts a WHERE a.delivery_id = d.id AND a.number = 1;
DELETE FROM attempts WHERE number = 1;
