-- The link tables (a person's units, groups and skills) are rebuilt with their foreign keys
-- checked at the commit (DEFERRABLE INITIALLY DEFERRED) and as clustered tables (WITHOUT
-- ROWID: the key is the row, no separate rowid table).
--
-- Why: with an immediate foreign key SQLite journals every page a multi-row insert touches, so
-- that a violation can undo just that statement. A bulk import writes three link rows per person
-- and spent about a tenth of its write time on that journal. The keys still hold: a violation
-- fails the commit. Removing a person still removes their links at once (ON DELETE CASCADE is
-- an action, not a check, and is never deferred).

CREATE TABLE person_units_v2 (
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    unit_id    BLOB NOT NULL REFERENCES units (id) DEFERRABLE INITIALLY DEFERRED,
    org_id     BLOB NOT NULL,
    PRIMARY KEY (person_id, unit_id)
) WITHOUT ROWID;
INSERT INTO person_units_v2 (person_id, unit_id, org_id)
    SELECT person_id, unit_id, org_id FROM person_units;
DROP TABLE person_units;
ALTER TABLE person_units_v2 RENAME TO person_units;
CREATE INDEX person_units_unit ON person_units (unit_id);

CREATE TABLE person_labels_v2 (
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    label_id   BLOB NOT NULL REFERENCES labels (id) DEFERRABLE INITIALLY DEFERRED,
    org_id     BLOB NOT NULL,
    PRIMARY KEY (person_id, label_id)
) WITHOUT ROWID;
INSERT INTO person_labels_v2 (person_id, label_id, org_id)
    SELECT person_id, label_id, org_id FROM person_labels;
DROP TABLE person_labels;
ALTER TABLE person_labels_v2 RENAME TO person_labels;
CREATE INDEX person_labels_label ON person_labels (label_id);
