-- SCIM 2.0 provisioning (Entra ID): what a SCIM client says about a person or group beyond
-- the directory's own fields. userName is unique per organisation ignoring case
-- (user_name_key is its lower-cased form). A person without a row here shows their first
-- e-mail address as userName.

CREATE TABLE scim_users (
    person_id      BLOB PRIMARY KEY REFERENCES people (id) ON DELETE CASCADE,
    org_id         BLOB NOT NULL,
    user_name      TEXT NOT NULL,
    user_name_key  TEXT NOT NULL,
    external_id    TEXT,
    department     TEXT,
    manager_id     BLOB REFERENCES people (id) ON DELETE SET NULL,
    UNIQUE (org_id, user_name_key)
);
CREATE INDEX scim_users_manager ON scim_users (manager_id);

CREATE TABLE scim_groups (
    label_id     BLOB PRIMARY KEY REFERENCES labels (id) ON DELETE CASCADE,
    org_id       BLOB NOT NULL,
    external_id  TEXT
);
