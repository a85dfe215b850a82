-- Fewer index writes per delivery (docs/benchmarks.md, "What moved the
-- numbers"): a delivery that succeeds first time no longer moves through a
-- state index, and a duplicate event finds its deliveries in its own row
-- instead of through an index entry for every delivery.

-- A stored event's delivery IDs, space-separated, in insertion order.
ALTER TABLE events ADD COLUMN delivery_ids TEXT NOT NULL DEFAULT '';
UPDATE events SET delivery_ids = coalesce(
    (SELECT group_concat(d.id, ' ' ORDER BY d.pk) FROM deliveries d WHERE d.event_seq = events.seq), '');
DROP INDEX deliveries_event;

-- DeliveryList by state: pending and in_flight deliveries are found
-- through the claim indexes, delivered ones (most rows) in ID order, and
-- retrying and dead ones through these.
DROP INDEX deliveries_state;
CREATE INDEX deliveries_retrying ON deliveries (id) WHERE state = 'retrying';
CREATE INDEX deliveries_dead ON deliveries (id) WHERE state = 'dead';
