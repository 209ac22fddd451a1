-- The customer portal (role `portal`). It may run at the ERP vendor with a database of its own,
-- so nothing here refers to the other roles' tables: organisations are the `org` claim of the
-- caller's token, people are the `sub` claim. Ids are UUIDs (BLOB here), times BIGINT
-- milliseconds since the epoch. `erp_id` is the ERP's own key, unique per organisation.

CREATE TABLE portal_orgs (
    org_id         BLOB PRIMARY KEY,
    name           TEXT NOT NULL,
    contact_email  TEXT,
    language       TEXT NOT NULL,
    time_zone      TEXT NOT NULL,
    show_photos    BOOLEAN NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE portal_clients (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL,
    erp_id       TEXT NOT NULL,
    given_name   TEXT NOT NULL,
    family_name  TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, erp_id)
);

CREATE TABLE portal_links (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL,
    client_id     BLOB NOT NULL REFERENCES portal_clients (id) ON DELETE CASCADE,
    subject       BLOB NOT NULL,
    relation      TEXT NOT NULL,
    appointments  BOOLEAN NOT NULL,
    messages      BOOLEAN NOT NULL,
    revoked_at    BIGINT,
    updated_at    BIGINT NOT NULL,
    UNIQUE (client_id, subject)
);
CREATE INDEX portal_links_subject ON portal_links (org_id, subject);

CREATE TABLE portal_appointments (
    id               BLOB PRIMARY KEY,
    org_id           BLOB NOT NULL,
    erp_id           TEXT NOT NULL,
    client_id        BLOB NOT NULL REFERENCES portal_clients (id) ON DELETE CASCADE,
    starts_at        BIGINT NOT NULL,
    ends_at          BIGINT NOT NULL,
    service          TEXT NOT NULL,
    carer_name       TEXT,
    carer_photo_url  TEXT,
    status           TEXT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (org_id, erp_id)
);
CREATE INDEX portal_appointments_client ON portal_appointments (org_id, client_id, starts_at);

CREATE TABLE portal_requests (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL,
    client_id       BLOB NOT NULL REFERENCES portal_clients (id) ON DELETE CASCADE,
    appointment_id  BLOB NOT NULL REFERENCES portal_appointments (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    wished_start    BIGINT,
    state           TEXT NOT NULL,
    answer          TEXT,
    created_by      BLOB NOT NULL,
    created_at      BIGINT NOT NULL,
    answered_at     BIGINT
);
CREATE INDEX portal_requests_org_state ON portal_requests (org_id, state, created_at);
CREATE INDEX portal_requests_appointment ON portal_requests (appointment_id, created_at);
CREATE INDEX portal_requests_client ON portal_requests (org_id, client_id, created_at);
-- One open request per visit, also under concurrent requests.
CREATE UNIQUE INDEX portal_requests_one_open ON portal_requests (appointment_id) WHERE state = 'open';

CREATE TABLE portal_messages (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL,
    client_id   BLOB NOT NULL REFERENCES portal_clients (id) ON DELETE CASCADE,
    direction   TEXT NOT NULL,
    author      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX portal_messages_client ON portal_messages (org_id, client_id, created_at);
CREATE INDEX portal_messages_org ON portal_messages (org_id, created_at);

CREATE TABLE portal_feeds (
    id             BLOB PRIMARY KEY,
    org_id         BLOB NOT NULL,
    link_id        BLOB NOT NULL REFERENCES portal_links (id) ON DELETE CASCADE,
    secret_digest  BLOB NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX portal_feeds_link ON portal_feeds (link_id);
