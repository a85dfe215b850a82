-- Held deliveries: kept, not attempted, while their subscription is
-- suspended or disabled. DeliveryUnhold releases a subscription's in the
-- order their events were stored (DeliveryList by state uses
-- deliveries_state).
CREATE INDEX deliveries_held ON deliveries (subscription_id, event_seq, position) WHERE state = 'held';
