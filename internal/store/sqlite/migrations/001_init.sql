-- Herald's first SQLite schema. Times are Unix milliseconds (0 is the zero
-- time); durations are nanoseconds.

-- A subscription is a JSON document plus the columns queries filter on.
CREATE TABLE subscriptions (
    id         TEXT    NOT NULL PRIMARY KEY,
    state      TEXT    NOT NULL,
    document   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row whose version grows with every subscription write, in the same
-- transaction.
CREATE TABLE subscriptions_version (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO subscriptions_version (singleton, version) VALUES (1, 0);

-- The payload is the last column so that reading the other columns does not
-- touch its overflow pages.
CREATE TABLE events (
    seq        INTEGER NOT NULL PRIMARY KEY,
    source     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    payload    BLOB    NOT NULL,
    UNIQUE (source, id)
);

-- Deliveries keep their insertion order in rowid (pk), which is the order a
-- duplicate event's delivery IDs are returned in. subscription_id has no
-- foreign key: deliveries outlive their subscription as history.
CREATE TABLE deliveries (
    pk              INTEGER NOT NULL PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    subscription_id TEXT    NOT NULL,
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    last_status     INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    next_at         INTEGER NOT NULL,
    lease_until     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- DeliveryClaim: pending deliveries by next_at, expired leases by lease_until.
CREATE INDEX deliveries_pending ON deliveries (next_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_in_flight ON deliveries (lease_until) WHERE state = 'in_flight';
-- DeliveryList by subscription or by state, newest first.
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_state ON deliveries (state, id);
-- A duplicate event's deliveries.
CREATE INDEX deliveries_event ON deliveries (event_seq);

CREATE TABLE attempts (
    delivery_id   TEXT    NOT NULL REFERENCES deliveries (id),
    number        INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    status_code   INTEGER NOT NULL,
    latency       INTEGER NOT NULL,
    error         TEXT    NOT NULL,
    response_body BLOB    NOT NULL,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
