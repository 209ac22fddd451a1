-- Duties, assignments, qualifications, the event outbox, feature switches, personal API keys
-- and calendar feeds. Ids are UUIDs (UUID here), times BIGINT milliseconds since the epoch.

ALTER TABLE api_keys ADD COLUMN person_id UUID REFERENCES people (id) ON DELETE CASCADE;

CREATE TABLE features (
    org_id      UUID NOT NULL REFERENCES organisations (id),
    feature     TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    tenant_id   UUID NOT NULL,
    changed_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, feature)
);

CREATE TABLE qualifications (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organisations (id),
    name        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name_key)
);

CREATE TABLE qualification_includes (
    qualification_id  UUID NOT NULL REFERENCES qualifications (id) ON DELETE CASCADE,
    includes_id       UUID NOT NULL REFERENCES qualifications (id),
    org_id            UUID NOT NULL,
    PRIMARY KEY (qualification_id, includes_id)
);
CREATE INDEX qualification_includes_org ON qualification_includes (org_id);
CREATE INDEX qualification_includes_target ON qualification_includes (includes_id);

CREATE TABLE person_qualifications (
    person_id         UUID NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    qualification_id  UUID NOT NULL REFERENCES qualifications (id),
    org_id            UUID NOT NULL,
    valid_until       BIGINT,
    PRIMARY KEY (person_id, qualification_id)
);
CREATE INDEX person_qualifications_qual ON person_qualifications (qualification_id);

CREATE TABLE duties (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organisations (id),
    unit_id         UUID NOT NULL REFERENCES units (id),
    title           TEXT NOT NULL,
    location        TEXT,
    description     TEXT,
    starts_at       BIGINT NOT NULL,
    ends_at         BIGINT NOT NULL,
    time_zone       TEXT NOT NULL,
    state           TEXT NOT NULL,
    chat            BOOLEAN NOT NULL DEFAULT FALSE,
    roster_version  BIGINT NOT NULL DEFAULT 0,
    version         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX duties_org_start ON duties (org_id, starts_at, id);
CREATE INDEX duties_unit_start ON duties (unit_id, starts_at, id);

CREATE TABLE duty_positions (
    id                UUID PRIMARY KEY,
    duty_id           UUID NOT NULL REFERENCES duties (id) ON DELETE CASCADE,
    org_id            UUID NOT NULL,
    name              TEXT NOT NULL,
    qualification_id  UUID REFERENCES qualifications (id),
    needed            BIGINT NOT NULL,
    ordinal           BIGINT NOT NULL
);
CREATE INDEX duty_positions_duty ON duty_positions (duty_id, ordinal);
CREATE INDEX duty_positions_qual ON duty_positions (qualification_id);

CREATE TABLE assignments (
    id                      UUID PRIMARY KEY,
    org_id                  UUID NOT NULL,
    duty_id                 UUID NOT NULL REFERENCES duties (id) ON DELETE CASCADE,
    person_id               UUID NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    position_id             UUID REFERENCES duty_positions (id),
    role                    TEXT NOT NULL,
    status                  TEXT NOT NULL,
    qualification_override  BOOLEAN NOT NULL DEFAULT FALSE,
    note                    TEXT,
    starts_at               BIGINT NOT NULL,
    version                 BIGINT NOT NULL,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL,
    UNIQUE (duty_id, person_id)
);
CREATE INDEX assignments_person ON assignments (person_id, starts_at, duty_id);
CREATE INDEX assignments_position ON assignments (position_id, status, org_id);
-- Covers the per-duty counts of listings (confirmed/requested, filled per position).
CREATE INDEX assignments_duty_counts ON assignments (duty_id, status, position_id, org_id);

CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      UUID NOT NULL,
    topic       TEXT NOT NULL,
    subject_id  UUID NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_org_topic ON events (org_id, topic, seq);

CREATE TABLE calendar_feeds (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL,
    person_id      UUID NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    secret_digest  BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    last_used_at   BIGINT
);
CREATE INDEX calendar_feeds_person ON calendar_feeds (person_id);

-- The longest duty of each organisation (only grows): "duties overlapping [from, to)" becomes
-- a bounded range on the start index, starts_at >= from - max_ms.
CREATE TABLE duty_spans (
    org_id  UUID PRIMARY KEY REFERENCES organisations (id),
    max_ms  BIGINT NOT NULL
);
