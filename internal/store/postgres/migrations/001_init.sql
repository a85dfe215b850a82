-- Herald's first PostgreSQL schema. The zero time is stored as
-- '0001-01-01 00:00:00+00'; durations are nanoseconds.

-- A subscription is a JSON document plus the columns queries filter on.
CREATE TABLE subscriptions (
    id         text        NOT NULL PRIMARY KEY,
    state      text        NOT NULL,
    document   jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One row whose version grows with every subscription write, in the same
-- transaction.
CREATE TABLE subscriptions_version (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO subscriptions_version (singleton, version) VALUES (true, 0);

CREATE TABLE events (
    seq        bigint      NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text        NOT NULL,
    id         text        NOT NULL,
    type       text        NOT NULL,
    created_at timestamptz NOT NULL,
    payload    bytea       NOT NULL,
    UNIQUE (source, id)
);

-- position is a delivery's index in its event's list, the order a
-- duplicate event's delivery IDs are returned in. subscription_id has no
-- foreign key: deliveries outlive their subscription as history.
CREATE TABLE deliveries (
    id              text        NOT NULL PRIMARY KEY,
    subscription_id text        NOT NULL,
    event_seq       bigint      NOT NULL REFERENCES events (seq),
    position        integer     NOT NULL,
    state           text        NOT NULL,
    attempts        integer     NOT NULL,
    last_status     integer     NOT NULL,
    last_error      text        NOT NULL,
    next_at         timestamptz NOT NULL,
    lease_until     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- DeliveryClaim scans claimable states in next_at order.
CREATE INDEX deliveries_claim ON deliveries (next_at, id) WHERE state IN ('pending', 'in_flight');
-- DeliveryList by subscription or by state, newest first.
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, id);
CREATE INDEX deliveries_state ON deliveries (state, id);
-- A duplicate event's deliveries, in order.
CREATE INDEX deliveries_event ON deliveries (event_seq, position);

CREATE TABLE attempts (
    delivery_id   text        NOT NULL REFERENCES deliveries (id),
    number        integer     NOT NULL,
    started_at    timestamptz NOT NULL,
    status_code   integer     NOT NULL,
    latency       bigint      NOT NULL,
    error         text        NOT NULL,
    response_body bytea       NOT NULL,
    PRIMARY KEY (delivery_id, number)
);
