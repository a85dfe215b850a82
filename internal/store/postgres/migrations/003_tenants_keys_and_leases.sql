-- Tenants, API keys, leases and the catalog's change log. An event is identified by its publisher's tenant
-- as well as its source and id, so that two tenants' events never
-- deduplicate each other. Events published before tenants existed belong
-- to no tenant ('').
ALTER TABLE events ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE events ADD CONSTRAINT events_tenant_source_id_key UNIQUE (tenant, source, id);
ALTER TABLE events DROP CONSTRAINT events_source_id_key;

-- An API key is the SHA-256 of its secret plus a JSON document.
CREATE TABLE api_keys (
    id         text        NOT NULL PRIMARY KEY,
    hash       text        NOT NULL UNIQUE,
    document   jsonb       NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys_version (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL
);
INSERT INTO api_keys_version (singleton, version) VALUES (true, 0);

-- Leases of work one node at a time does (pruning).
CREATE TABLE leases (
    name   text        NOT NULL PRIMARY KEY,
    holder text        NOT NULL,
    until  timestamptz NOT NULL
);

-- The catalog's change log: each subscription write stamps the row with
-- the version it made, and a deletion leaves a tombstone, so that nodes
-- read only what changed since the version they hold.
ALTER TABLE subscriptions ADD COLUMN seq bigint NOT NULL DEFAULT 0;
CREATE INDEX subscriptions_seq ON subscriptions (seq);
CREATE TABLE subscription_tombstones (
    id  text   NOT NULL PRIMARY KEY,
    seq bigint NOT NULL
);
CREATE INDEX subscription_tombstones_seq ON subscription_tombstones (seq);
