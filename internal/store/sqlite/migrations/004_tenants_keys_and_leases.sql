-- herald:foreign-keys-off
-- Tenants, API keys, leases and the catalog's change log. An event is identified by its publisher's tenant
-- as well as its source and id, so that two tenants' events never
-- deduplicate each other: events is rebuilt with UNIQUE (tenant, source,
-- id), SQLite's way of changing a table's constraints (the migration runs
-- with foreign keys off and checks them before it commits). Events
-- published before tenants existed belong to no tenant ('').
CREATE TABLE events_new (
    seq          INTEGER NOT NULL PRIMARY KEY,
    tenant       TEXT    NOT NULL DEFAULT '',
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    delivery_ids TEXT    NOT NULL DEFAULT '',
    payload      BLOB    NOT NULL,
    UNIQUE (tenant, source, id)
);
INSERT INTO events_new (seq, source, id, type, created_at, delivery_ids, payload)
    SELECT seq, source, id, type, created_at, delivery_ids, payload FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

-- An API key is the SHA-256 of its secret plus a JSON document.
CREATE TABLE api_keys (
    id         TEXT    NOT NULL PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,
    document   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys_version (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO api_keys_version (singleton, version) VALUES (1, 0);

-- Leases of work one node at a time does (pruning).
CREATE TABLE leases (
    name   TEXT    NOT NULL PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) WITHOUT ROWID;

-- The catalog's change log: each subscription write stamps the row with
-- the version it made, and a deletion leaves a tombstone, so that nodes
-- read only what changed since the version they hold.
ALTER TABLE subscriptions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX subscriptions_seq ON subscriptions (seq);
CREATE TABLE subscription_tombstones (
    id  TEXT    NOT NULL PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX subscription_tombstones_seq ON subscription_tombstones (seq);
