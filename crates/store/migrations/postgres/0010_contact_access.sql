-- Contact access: grants ("members of unit/group X may see fields F of people in unit/group
-- Y") and the offline sync feed (a per-organisation change counter, each person's last
-- change, what a person was a member of before a change, and the viewers clients synced as).

CREATE TABLE contact_grants (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organisations (id),
    viewer_kind  TEXT NOT NULL,
    viewer_id    UUID NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    UUID NOT NULL,
    fields       BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX contact_grants_org ON contact_grants (org_id, id);

CREATE TABLE contact_heads (
    org_id  UUID PRIMARY KEY REFERENCES organisations (id),
    seq     BIGINT NOT NULL
);

ALTER TABLE people ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE people ADD COLUMN created_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX people_org_change ON people (org_id, change_seq);

CREATE TABLE contact_log (
    org_id     UUID NOT NULL,
    seq        BIGINT NOT NULL,
    person_id  UUID NOT NULL,
    prior      TEXT,
    PRIMARY KEY (org_id, seq, person_id)
);
CREATE INDEX contact_log_person ON contact_log (org_id, person_id, seq);

CREATE TABLE feed_viewers (
    org_id      UUID NOT NULL,
    digest      TEXT NOT NULL,
    viewer      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, digest)
);
