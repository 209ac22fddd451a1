-- The server's pending proposals are no longer folded into the group's stored state when they
-- are made (a load, re-sign and save of the whole public tree per roster change); the commit
-- that references them reads them from the stream instead. `seq` is the stream number of the
-- proposal message; rows from before this change have none (their proposals are still in the
-- stored state).
--
-- `state_id` changes with every save of a group's state (a random number): a node that keeps
-- a group's loaded state in memory uses it only while the stored state is still that one.

ALTER TABLE chat_proposals ADD COLUMN seq BIGINT;
ALTER TABLE chat_groups ADD COLUMN state_id BIGINT NOT NULL DEFAULT 0;
