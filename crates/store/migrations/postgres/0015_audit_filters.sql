-- The audit log by target (a person's history in the console) and by actor (what someone
-- did), newest first, without walking the organisation's whole log.

CREATE INDEX audit_events_target ON audit_events (org_id, target_id, seq);
CREATE INDEX audit_events_actor ON audit_events (org_id, actor, seq);
