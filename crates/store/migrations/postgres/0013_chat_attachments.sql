-- Attachments of the duty chat: files a device encrypted before upload (the key travels
-- inside an MLS application message), kept as opaque blobs and deleted with the chat.
-- chat_settings.attachment_max_bytes is the organisation's size limit (0 turns uploads off).

ALTER TABLE chat_settings ADD COLUMN attachment_max_bytes BIGINT NOT NULL DEFAULT 10485760;

CREATE TABLE chat_attachments (
    id          UUID PRIMARY KEY,
    duty_id     UUID NOT NULL REFERENCES chat_groups (duty_id) ON DELETE CASCADE,
    org_id      UUID NOT NULL,
    device_id   UUID,
    size        BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX chat_attachments_duty ON chat_attachments (duty_id);
