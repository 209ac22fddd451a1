-- Roster events by age: the chat worker on PostgreSQL looks again at the recent ones (a
-- transaction can commit an event with a lower number after a higher one was read), and this
-- index keeps that look to the recent window instead of a walk over all history.

CREATE INDEX events_topic_created ON events (topic, created_at, seq);
