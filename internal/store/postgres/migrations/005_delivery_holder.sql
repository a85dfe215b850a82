-- Who holds an in-flight delivery's claim: the claiming node's ID, so
-- that a node restarted with the same ID puts back at once what it held
-- when it died, and renews only its own claims while it works on them.
-- Deliveries claimed before this migration have no holder ('') and are
-- claimed again when their lease ends, as before. A constant default
-- rewrites no row.
ALTER TABLE deliveries ADD COLUMN holder text NOT NULL DEFAULT '';
