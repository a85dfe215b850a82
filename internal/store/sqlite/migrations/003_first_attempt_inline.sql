-- A delivery's first attempt is kept in its own row, so that a delivery
-- that succeeds first time (most of them) is written as one row update
-- instead of an update and an attempts row (docs/benchmarks.md, "What
-- moved the numbers"). Later attempts stay in attempts. first_started_at
-- is NULL until the first attempt is recorded.
ALTER TABLE deliveries ADD COLUMN first_started_at    INTEGER;
ALTER TABLE deliveries ADD COLUMN first_status_code   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN first_latency       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN first_error         TEXT    NOT NULL DEFAULT '';
ALTER TABLE deliveries ADD COLUMN first_response_body BLOB    NOT NULL DEFAULT x'';

UPDATE deliveries SET
    first_started_at = a.started_at, first_status_code = a.status_code,
    first_latency = a.latency, first_error = a.error, first_response_body = a.response_body
FROM attempts a WHERE a.delivery_id = deliveries.id AND a.number = 1;
DELETE FROM attempts WHERE number = 1;
