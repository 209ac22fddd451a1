-- Delivery state of the outbox: when the next attempt is due and why the last one failed.
-- States: pending (to send), sending (claimed by a worker until next_attempt_at), sent,
-- dead (gave up after too many attempts), sink (no transport configured: kept for
-- `carebridge outbox list`).

ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
