-- Foundation schema (SQLite). Keep in step with ../postgres/0001_foundation.sql: a test compares
-- the table and column lists of both.

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE organisations (
    id               BLOB PRIMARY KEY,
    slug             TEXT NOT NULL UNIQUE,
    name             TEXT NOT NULL,
    default_region   TEXT NOT NULL,
    default_language TEXT NOT NULL,
    contact_email    TEXT,
    settings         TEXT NOT NULL DEFAULT '{}',
    discoverable     BOOLEAN NOT NULL DEFAULT FALSE,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE units (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations (id),
    parent_id   BLOB REFERENCES units (id),
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX units_org_path ON units (org_id, path);
CREATE INDEX units_parent ON units (parent_id);

CREATE TABLE accounts (
    id             BLOB PRIMARY KEY,
    login          TEXT NOT NULL UNIQUE,
    password_hash  TEXT,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE people (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organisations (id),
    account_id      BLOB REFERENCES accounts (id),
    kind            TEXT NOT NULL,
    given_name      TEXT NOT NULL,
    family_name     TEXT NOT NULL,
    sort_key        TEXT NOT NULL,
    external_id     TEXT,
    language        TEXT,
    emails          TEXT NOT NULL DEFAULT '[]',
    phones          TEXT NOT NULL DEFAULT '[]',
    address         TEXT NOT NULL DEFAULT '{}',
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    version         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (org_id, external_id),
    UNIQUE (org_id, account_id)
);
CREATE INDEX people_org_sort ON people (org_id, sort_key, id);

-- Search tokens with the person's sort key beside them, so a selective search is answered from
-- the index alone (token range, then sort) and a broad one by walking people in name order and
-- probing (person_id, token).
CREATE TABLE person_tokens (
    org_id     BLOB NOT NULL,
    token      TEXT NOT NULL,
    sort_key   TEXT NOT NULL,
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, token, person_id)
);
CREATE INDEX person_tokens_range ON person_tokens (org_id, token, sort_key, person_id);
CREATE INDEX person_tokens_person ON person_tokens (person_id, token);

CREATE TABLE person_units (
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    unit_id    BLOB NOT NULL REFERENCES units (id),
    org_id     BLOB NOT NULL,
    PRIMARY KEY (person_id, unit_id)
);
CREATE INDEX person_units_unit ON person_units (unit_id);

CREATE TABLE labels (
    id        BLOB PRIMARY KEY,
    org_id    BLOB NOT NULL REFERENCES organisations (id),
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    name_key  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, kind, name_key)
);

CREATE TABLE person_labels (
    person_id  BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    label_id   BLOB NOT NULL REFERENCES labels (id),
    org_id     BLOB NOT NULL,
    PRIMARY KEY (person_id, label_id)
);
CREATE INDEX person_labels_label ON person_labels (label_id);

CREATE TABLE role_assignments (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organisations (id),
    person_id   BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    unit_id     BLOB REFERENCES units (id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX role_assignments_person ON role_assignments (person_id);
CREATE INDEX role_assignments_org ON role_assignments (org_id, id);
CREATE INDEX role_assignments_unit ON role_assignments (unit_id);

CREATE TABLE api_keys (
    id             BLOB PRIMARY KEY,
    org_id         BLOB REFERENCES organisations (id),
    name           TEXT NOT NULL,
    secret_digest  BLOB NOT NULL,
    permissions    TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    last_used_at   BIGINT
);
CREATE INDEX api_keys_org ON api_keys (org_id, id);

CREATE TABLE audit_events (
    org_id         BLOB NOT NULL,
    seq            BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target_type    TEXT NOT NULL,
    target_id      TEXT NOT NULL,
    before_digest  TEXT,
    after_digest   TEXT,
    source         TEXT NOT NULL,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE TABLE audit_heads (
    org_id  BLOB PRIMARY KEY,
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
