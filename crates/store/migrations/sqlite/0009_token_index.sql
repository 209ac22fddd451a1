-- Search tokens as a clustered index: the range index (org_id, token, sort_key, person_id)
-- becomes the table itself (WITHOUT ROWID), so a token costs two B-tree inserts (table and
-- the per-person index) instead of four (rowid table, primary key, range index, per-person
-- index). Bulk imports write several tokens per person, which made this table their main cost.

CREATE TABLE person_tokens_clustered (
    org_id     BLOB NOT NULL,
    token      TEXT NOT NULL,
    sort_key   TEXT NOT NULL,
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, token, sort_key, person_id)
) WITHOUT ROWID;
INSERT INTO person_tokens_clustered (org_id, token, sort_key, person_id)
    SELECT org_id, token, sort_key, person_id FROM person_tokens;
DROP TABLE person_tokens;
ALTER TABLE person_tokens_clustered RENAME TO person_tokens;
CREATE INDEX person_tokens_person ON person_tokens (person_id, token);
