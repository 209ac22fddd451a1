-- Upstream identity providers (federation): one OpenID provider per organisation, e.g. the
-- organisation's Microsoft Entra ID. The client secret must be readable to call the
-- provider's token endpoint and is stored as is: protect the database and its backups.
-- upstream_flows holds a sign-in in progress (state, nonce, PKCE verifier) for ten minutes.

CREATE TABLE upstream_providers (
    org_id          UUID PRIMARY KEY REFERENCES organisations (id),
    name            TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT NOT NULL,
    link_by_email   BOOLEAN NOT NULL,
    jit_create      BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE upstream_flows (
    state          TEXT PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES organisations (id),
    next           TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    pkce_verifier  TEXT NOT NULL,
    expires_at     BIGINT NOT NULL
);
