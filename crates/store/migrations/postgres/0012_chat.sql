-- The duty chat (MLS delivery service). The server stores ciphertext, public group state and
-- public keys only: no group secret and no plaintext ever reaches these tables.
--
-- chat_server_keys: the organisation's external-sender signature key (Ed25519), named in
-- every group's context so that the server may propose adds and removes.
-- chat_devices: a person's registered MLS devices (signature key, hashed device token).
-- chat_key_packages: KeyPackages uploaded by devices, each handed out once, a last-resort one
-- is kept.
-- chat_rosters and chat_members: the chat's copy of each duty's roster, from roster events.
-- chat_groups: one MLS group per duty, followed as a PublicGroup (state blob), with the next
-- message number. chat_group_devices: which device is which leaf now. chat_proposals: the
-- server's proposals of the current epoch. chat_messages: the ordered stream of each group.

CREATE TABLE chat_settings (
    org_id         UUID PRIMARY KEY REFERENCES organisations (id) ON DELETE CASCADE,
    writable_days  BIGINT NOT NULL,
    readable_days  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE chat_server_keys (
    org_id       UUID PRIMARY KEY REFERENCES organisations (id) ON DELETE CASCADE,
    public_key   BYTEA NOT NULL,
    private_key  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE chat_devices (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL,
    person_id      UUID NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    signature_key  BYTEA NOT NULL UNIQUE,
    token_hash     BYTEA NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT
);
CREATE INDEX chat_devices_person ON chat_devices (org_id, person_id);

CREATE TABLE chat_key_packages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    UUID NOT NULL REFERENCES chat_devices (id) ON DELETE CASCADE,
    org_id       UUID NOT NULL,
    data         BYTEA NOT NULL,
    last_resort  BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX chat_key_packages_device ON chat_key_packages (device_id, last_resort, id);

CREATE TABLE chat_rosters (
    duty_id    UUID PRIMARY KEY REFERENCES duties (id) ON DELETE CASCADE,
    org_id     UUID NOT NULL,
    version    BIGINT NOT NULL,
    chat       BOOLEAN NOT NULL,
    cancelled  BOOLEAN NOT NULL,
    ends_at    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX chat_rosters_ends ON chat_rosters (deleted, ends_at);

CREATE TABLE chat_members (
    duty_id    UUID NOT NULL REFERENCES chat_rosters (duty_id) ON DELETE CASCADE,
    person_id  UUID NOT NULL,
    org_id     UUID NOT NULL,
    PRIMARY KEY (duty_id, person_id)
);
CREATE INDEX chat_members_person ON chat_members (person_id);

CREATE TABLE chat_groups (
    duty_id     UUID PRIMARY KEY REFERENCES chat_rosters (duty_id) ON DELETE CASCADE,
    org_id      UUID NOT NULL,
    epoch       BIGINT NOT NULL,
    state       BYTEA NOT NULL,
    next_seq    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE chat_group_devices (
    duty_id    UUID NOT NULL REFERENCES chat_groups (duty_id) ON DELETE CASCADE,
    device_id  UUID NOT NULL,
    org_id     UUID NOT NULL,
    leaf       BIGINT NOT NULL,
    since_seq  BIGINT NOT NULL,
    PRIMARY KEY (duty_id, device_id)
);
CREATE INDEX chat_group_devices_device ON chat_group_devices (device_id);

CREATE TABLE chat_proposals (
    duty_id    UUID NOT NULL REFERENCES chat_groups (duty_id) ON DELETE CASCADE,
    device_id  UUID NOT NULL,
    org_id     UUID NOT NULL,
    action     TEXT NOT NULL,
    epoch      BIGINT NOT NULL,
    PRIMARY KEY (duty_id, device_id)
);

CREATE TABLE chat_messages (
    duty_id     UUID NOT NULL REFERENCES chat_groups (duty_id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    org_id      UUID NOT NULL,
    epoch       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    sender      UUID,
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (duty_id, seq)
);

CREATE TABLE chat_consumers (
    name  TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL
);
