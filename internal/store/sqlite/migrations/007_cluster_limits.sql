-- Limits that hold across nodes. token_buckets holds one token bucket per
-- limited key (a subscription's rate): tokens left when it was last
-- taken from, and when (Unix milliseconds). sink_pauses holds the sink
-- origins paused by a 429 or 503 with Retry-After. nodes holds each
-- node's heartbeat, to share a concurrency limit among the live nodes.
CREATE TABLE token_buckets (
    key        TEXT    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    taken      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sink_pauses (
    origin TEXT    NOT NULL PRIMARY KEY,
    until  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE nodes (
    id    TEXT    NOT NULL PRIMARY KEY,
    until INTEGER NOT NULL
) WITHOUT ROWID;
