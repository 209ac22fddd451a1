-- An import's new people have no account, yet each of them took an entry (org_id, NULL) in the
-- unique index on (org_id, account_id): a tenth or more of the server's work for the people
-- table in a bulk import. NULLs never conflict in a unique index, so a partial index over the
-- people with an account enforces the same rule, and lookups by account (account_id = …,
-- never NULL) can use it as before.
ALTER TABLE people DROP CONSTRAINT IF EXISTS people_org_id_account_id_key;
CREATE UNIQUE INDEX people_org_account ON people (org_id, account_id) WHERE account_id IS NOT NULL;
