-- Files of a workspace: every upload to a file is a new immutable version; the bytes
-- live in storage objects named by generated ids (never by the uploaded name), written
-- and made durable before these rows. Shares give a user, or every reader of another
-- workspace, read or write access to one file on top of the workspace's grants.
-- Same tables in both dialects; see 0002 for the conventions.

CREATE TABLE files (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    name         TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX files_workspace_idx ON files (workspace_id, id);

-- `object_id` names the stored bytes; a restore makes a new version naming the object
-- of the version it restores (`restored_from`), so objects are shared, never rewritten.
CREATE TABLE file_versions (
    file_id       TEXT COLLATE "C" NOT NULL REFERENCES files (id),
    version       BIGINT NOT NULL,
    object_id     TEXT COLLATE "C" NOT NULL,
    size          BIGINT NOT NULL,
    content_type  TEXT COLLATE "C" NOT NULL,
    sha256        TEXT COLLATE "C" NOT NULL,
    restored_from BIGINT,
    uploaded_by   TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (file_id, version)
);

-- `target_kind` is `user` or `workspace`; `access` is `read` or `write`; `reshare`
-- lets the holder share the file on, never beyond what they hold.
CREATE TABLE file_shares (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    file_id     TEXT COLLATE "C" NOT NULL REFERENCES files (id),
    target_kind TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL,
    access      TEXT COLLATE "C" NOT NULL,
    reshare     BIGINT NOT NULL,
    granted_by  TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at  TEXT COLLATE "C" NOT NULL,
    CONSTRAINT file_shares_key UNIQUE (file_id, target_kind, target_id)
);
CREATE INDEX file_shares_target_idx ON file_shares (target_kind, target_id);
