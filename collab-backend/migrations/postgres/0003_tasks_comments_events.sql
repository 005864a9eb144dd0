-- Tasks (with assignees and subtasks), comments (edit history, soft delete, one level of
-- replies), reactions, remembered mentions, and the notification outbox (`events`).
-- Same tables in both dialects; see 0002 for the conventions.

CREATE TABLE tasks (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    workspace_id     TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    parent_id        TEXT COLLATE "C" REFERENCES tasks (id),
    title            TEXT COLLATE "C" NOT NULL,
    description      TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL,
    priority         TEXT COLLATE "C" NOT NULL,
    due_date         TEXT COLLATE "C",
    progress         BIGINT NOT NULL,
    estimate_minutes BIGINT,
    created_by       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at       TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT COLLATE "C" NOT NULL,
    revision         BIGINT NOT NULL
);
CREATE INDEX tasks_workspace_idx ON tasks (workspace_id, id);
CREATE INDEX tasks_parent_idx ON tasks (parent_id);

CREATE TABLE task_assignees (
    task_id TEXT COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    PRIMARY KEY (task_id, user_id)
);
CREATE INDEX task_assignees_user_idx ON task_assignees (user_id);

-- A comment is on a resource (`task` today; `file` later) of one workspace. Replies name
-- a top-level comment of the same resource as parent. Deleting keeps the row (a
-- tombstone: body emptied, deleted_at set) so replies keep their thread.
CREATE TABLE comments (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    resource_kind TEXT COLLATE "C" NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    parent_id     TEXT COLLATE "C" REFERENCES comments (id),
    author_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    body          TEXT COLLATE "C" NOT NULL,
    edit_count    BIGINT NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    deleted_at    TEXT COLLATE "C",
    revision      BIGINT NOT NULL
);
CREATE INDEX comments_resource_idx ON comments (resource_kind, resource_id, id);

-- Earlier texts of a comment, oldest first.
CREATE TABLE comment_edits (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    comment_id TEXT COLLATE "C" NOT NULL REFERENCES comments (id),
    body       TEXT COLLATE "C" NOT NULL,
    edited_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX comment_edits_comment_idx ON comment_edits (comment_id, id);

-- One reaction per user per emoji per comment: the constraint decides between
-- concurrent duplicates.
CREATE TABLE reactions (
    comment_id TEXT COLLATE "C" NOT NULL REFERENCES comments (id),
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    emoji      TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    CONSTRAINT reactions_key UNIQUE (comment_id, user_id, emoji)
);

-- Who was already notified of a mention in a task or comment: an edit notifies only
-- the people it newly mentions.
CREATE TABLE mentions (
    source_kind TEXT COLLATE "C" NOT NULL,
    source_id   TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (source_kind, source_id, user_id)
);

-- The notification outbox, one row per event per recipient, written in the transaction
-- of the change that caused it. See the crate documentation (`store::events`).
CREATE TABLE events (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    kind          TEXT COLLATE "C" NOT NULL,
    recipient_id  TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    actor_id      TEXT COLLATE "C" REFERENCES users (id),
    resource_type TEXT COLLATE "C" NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    payload       TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    delivered_at  TEXT COLLATE "C"
);
CREATE INDEX events_pending_idx ON events (delivered_at, id);
CREATE INDEX events_recipient_idx ON events (recipient_id, id);
