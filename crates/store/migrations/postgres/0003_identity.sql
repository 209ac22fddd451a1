-- Token signing keys of the identity role (Ed25519). The newest key without retired_at signs,
-- retired keys stay published in the JWKS until every token they signed has expired.
-- The private key is kept as PKCS#8 DER: protect the database (and its backups) accordingly.

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_der  BYTEA NOT NULL,
    public_x     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

-- OAuth clients, registered per organisation. client_id is public, the secret (256 random
-- bits, confidential clients only) is stored as a SHA-256 digest.
CREATE TABLE oauth_clients (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES organisations (id),
    client_id      TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    public         BOOLEAN NOT NULL,
    secret_digest  BYTEA,
    redirect_uris  TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    grants         TEXT NOT NULL,
    first_party    BOOLEAN NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX oauth_clients_org ON oauth_clients (org_id, id);
