-- Import jobs: an uploaded people file (kept an hour, so a dry run can be applied or checked
-- again with another column mapping, from any node) and the runs over it, with their progress
-- and report (kept a week).

CREATE TABLE import_files (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organisations (id),
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX import_files_expiry ON import_files (expires_at);

CREATE TABLE import_jobs (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organisations (id),
    file_id      UUID NOT NULL,
    file_name    TEXT NOT NULL,
    file_size    BIGINT NOT NULL,
    owner        TEXT NOT NULL,
    options      TEXT NOT NULL,
    state        TEXT NOT NULL,
    progress     DOUBLE PRECISION NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    report       TEXT,
    problem      TEXT
);
CREATE INDEX import_jobs_org ON import_jobs (org_id, created_at);
