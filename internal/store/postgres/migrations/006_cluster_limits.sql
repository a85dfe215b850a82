-- Limits that hold across nodes. token_buckets holds one token bucket per
-- limited key (a subscription's rate): tokens left when it was last
-- taken from, and when (Unix milliseconds). sink_pauses holds the sink
-- origins paused by a 429 or 503 with Retry-After. nodes holds each
-- node's heartbeat, to share a concurrency limit among the live nodes.
-- token_buckets and nodes are UNLOGGED: taking a token waits for no WAL
-- flush, and after a crash of PostgreSQL they are empty, which means full
-- buckets and no nodes until the next heartbeats.
CREATE UNLOGGED TABLE token_buckets (
    key        text             NOT NULL PRIMARY KEY,
    tokens     double precision NOT NULL,
    taken      integer          NOT NULL,
    updated_at bigint           NOT NULL
);

CREATE TABLE sink_pauses (
    origin text        NOT NULL PRIMARY KEY,
    until  timestamptz NOT NULL
);

CREATE UNLOGGED TABLE nodes (
    id    text        NOT NULL PRIMARY KEY,
    until timestamptz NOT NULL
);
