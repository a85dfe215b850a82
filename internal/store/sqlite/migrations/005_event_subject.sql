-- An event's subject, kept beside it so that an erasure request can find
-- every event about one subject ("all events about customer X"). Events
-- stored before this migration have none ('') and are erased by source
-- and id. The index holds only events that have a subject.
ALTER TABLE events ADD COLUMN subject TEXT NOT NULL DEFAULT '';
CREATE INDEX events_subject ON events (tenant, subject, seq) WHERE subject <> '';
