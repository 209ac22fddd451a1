-- Search tokens become cheaper to write: a token is one B-tree entry (the clustered key
-- `(org_id, token, sort_key, person_id)`), without the per-person index and the foreign key
-- that each cost another B-tree operation per token. Bulk imports write five or more tokens per
-- person, which made them their largest cost.
--
-- What the per-person index did is now done by `people.search`, the person's tokens as
-- " t1 t2 … " (empty without tokens): further query words are checked against it, and a
-- person's token rows are found by key from it (with `people.sort_key`) before they change or
-- the person is deleted (see `repo::people::drop_tokens`).

ALTER TABLE people ADD COLUMN search TEXT NOT NULL DEFAULT '';
UPDATE people SET search = COALESCE(
    (SELECT ' ' || group_concat(t.token, ' ') || ' ' FROM person_tokens t WHERE t.person_id = people.id),
    '');

CREATE TABLE person_tokens_keyed (
    org_id     BLOB NOT NULL,
    token      TEXT NOT NULL,
    sort_key   TEXT NOT NULL,
    person_id  BLOB NOT NULL,
    PRIMARY KEY (org_id, token, sort_key, person_id)
) WITHOUT ROWID;
INSERT INTO person_tokens_keyed (org_id, token, sort_key, person_id)
    SELECT org_id, token, sort_key, person_id FROM person_tokens;
DROP TABLE person_tokens;
ALTER TABLE person_tokens_keyed RENAME TO person_tokens;
