-- Sign-in and the OpenID Connect provider: phone logins, lockout and TOTP on accounts,
-- browser sessions, authorization codes, token grants (one row per code or device exchange
-- whose refresh token rotates in place), consents, device codes, SMS one-time codes, recovery
-- codes, one-time action links (invitation, password reset), the per-organisation sign-in
-- policy and the outbox that e-mail and SMS leave through.
-- Every secret (session cookie, code, refresh token, OTP, recovery code, link) is stored only
-- as a SHA-256 digest. The TOTP seed must be readable to check codes and is stored as is:
-- protect the database (and its backups) as for the signing keys.

ALTER TABLE accounts ADD COLUMN phone TEXT;
CREATE UNIQUE INDEX accounts_phone ON accounts (phone);
ALTER TABLE accounts ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked_until BIGINT;
ALTER TABLE accounts ADD COLUMN totp_secret BYTEA;
ALTER TABLE accounts ADD COLUMN totp_confirmed_at BIGINT;
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT;

CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    account_id     UUID NOT NULL REFERENCES accounts (id),
    secret_digest  BYTEA NOT NULL,
    amr            TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    mfa_at         BIGINT,
    user_agent     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX sessions_account ON sessions (account_id, created_at);

CREATE TABLE auth_codes (
    digest          BYTEA PRIMARY KEY,
    client_id       TEXT NOT NULL,
    org_id          UUID NOT NULL REFERENCES organisations (id),
    person_id       UUID NOT NULL REFERENCES people (id),
    session_id      UUID NOT NULL REFERENCES sessions (id),
    redirect_uri    TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    nonce           TEXT,
    code_challenge  TEXT,
    auth_time       BIGINT NOT NULL,
    amr             TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    grant_id        UUID
);

CREATE TABLE token_grants (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organisations (id),
    person_id       UUID NOT NULL REFERENCES people (id),
    client_id       TEXT NOT NULL,
    session_id      UUID,
    scopes          TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    amr             TEXT NOT NULL,
    refresh_digest  BYTEA,
    generation      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    revoked_reason  TEXT
);
CREATE INDEX token_grants_person ON token_grants (person_id, created_at);
CREATE INDEX token_grants_session ON token_grants (session_id);

CREATE TABLE consents (
    person_id   UUID NOT NULL REFERENCES people (id),
    client_id   TEXT NOT NULL,
    org_id      UUID NOT NULL REFERENCES organisations (id),
    scopes      TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (person_id, client_id)
);

CREATE TABLE device_codes (
    digest        BYTEA PRIMARY KEY,
    user_code     TEXT NOT NULL UNIQUE,
    client_id     TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    org_hint      TEXT,
    state         TEXT NOT NULL,
    org_id        UUID,
    person_id     UUID,
    session_id    UUID,
    auth_time     BIGINT,
    amr           TEXT,
    interval_s    BIGINT NOT NULL,
    last_poll_at  BIGINT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE TABLE otp_challenges (
    session_id   UUID PRIMARY KEY REFERENCES sessions (id),
    code_digest  BYTEA NOT NULL,
    phone        TEXT NOT NULL,
    tries        BIGINT NOT NULL,
    sends        BIGINT NOT NULL,
    sent_at      BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    account_id  UUID NOT NULL REFERENCES accounts (id),
    digest      BYTEA NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (account_id, digest)
);

CREATE TABLE action_links (
    digest      BYTEA PRIMARY KEY,
    kind        TEXT NOT NULL,
    account_id  UUID NOT NULL REFERENCES accounts (id),
    org_id      UUID,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE identity_policies (
    org_id      UUID PRIMARY KEY REFERENCES organisations (id),
    mfa_roles   TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE outbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL UNIQUE,
    org_id      UUID,
    channel     TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    subject     TEXT,
    body        TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT
);
CREATE INDEX outbox_pending ON outbox (state, seq);
CREATE INDEX outbox_recipient ON outbox (recipient, seq);
