-- The contacts sync feed's log is pruned (housekeeping): `log_floor` is the oldest change
-- number the log still explains (a client holding an older state starts again with a
-- snapshot); `mark_seq`/`mark_at` remember the head at a past moment, which becomes the floor
-- once it is 30 days old. Viewers unused for 90 days are dropped (`used_at`, touched at most
-- daily).

ALTER TABLE contact_heads ADD COLUMN log_floor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contact_heads ADD COLUMN mark_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contact_heads ADD COLUMN mark_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE feed_viewers ADD COLUMN used_at BIGINT NOT NULL DEFAULT 0;
UPDATE feed_viewers SET used_at = created_at;
