-- Search tokens become cheaper to write: no per-person index and no foreign key (a trigger
-- call per token row), which made the token rows the largest cost of a bulk import.
--
-- What the per-person index did is now done by `people.search`, the person's tokens as
-- " t1 t2 … " (empty without tokens): further query words are checked against it, and a
-- person's token rows are found by key from it (with `people.sort_key`) before they change or
-- the person is deleted (see `repo::people::drop_tokens`).

ALTER TABLE people ADD COLUMN search TEXT NOT NULL DEFAULT '';
UPDATE people p SET search = ' ' || s.t || ' '
    FROM (SELECT person_id, string_agg(token, ' ') AS t FROM person_tokens GROUP BY person_id) s
    WHERE s.person_id = p.id;

ALTER TABLE person_tokens DROP CONSTRAINT IF EXISTS person_tokens_person_id_fkey;
DROP INDEX IF EXISTS person_tokens_person;
