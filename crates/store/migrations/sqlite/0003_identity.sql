-- Token signing keys of the identity role (Ed25519). The newest key without retired_at signs,
-- retired keys stay published in the JWKS until every token they signed has expired.
-- The private key is kept as PKCS#8 DER: protect the database (and its backups) accordingly.

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_der  BLOB NOT NULL,
    public_x     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);
