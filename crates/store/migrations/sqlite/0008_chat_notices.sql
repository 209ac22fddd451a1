-- Who has been told that a duty's chat is open (so each rostered person is told once, when
-- the chat is switched on or when they join a duty whose chat is on).

CREATE TABLE chat_notices (
    duty_id     BLOB NOT NULL REFERENCES duties (id) ON DELETE CASCADE,
    person_id   BLOB NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    org_id      BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (duty_id, person_id)
);
CREATE INDEX chat_notices_person ON chat_notices (person_id);
