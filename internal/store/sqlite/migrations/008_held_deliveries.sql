-- Held deliveries: kept, not attempted, while their subscription is
-- suspended or disabled. DeliveryUnhold releases a subscription's in the
-- order their events were stored; DeliveryList finds them by state.
CREATE INDEX deliveries_held ON deliveries (subscription_id, event_seq) WHERE state = 'held';
CREATE INDEX deliveries_held_list ON deliveries (id) WHERE state = 'held';
