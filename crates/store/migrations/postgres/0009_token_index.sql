-- Search tokens: the range index (org_id, token, sort_key, person_id) becomes the primary key,
-- one index fewer to maintain per token (bulk imports write several tokens per person).
-- A person has one sort key, so the key is as unique as the old (org_id, token, person_id).

ALTER TABLE person_tokens DROP CONSTRAINT person_tokens_pkey;
DROP INDEX person_tokens_range;
ALTER TABLE person_tokens ADD PRIMARY KEY (org_id, token, sort_key, person_id);
