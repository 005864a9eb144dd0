-- Notifications (issue 6): what the dispatcher makes of `events`, per-user preferences,
-- per-workspace mutes, and single-use WebSocket tickets. Same tables in both dialects;
-- see 0002 for the conventions.

-- One row per delivered in-app notification. `event_id` is UNIQUE: an event processed
-- twice (a retried pass, two nodes racing) makes one notification. Deleting is soft
-- (`deleted_at`) so the row keeps guarding its event.
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY NOT NULL,
    event_id      TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id),
    org_id        TEXT NOT NULL REFERENCES organizations (id),
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    kind          TEXT NOT NULL,
    actor_id      TEXT REFERENCES users (id),
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    read_at       TEXT,
    deleted_at    TEXT,
    CONSTRAINT notifications_event_key UNIQUE (event_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id);

-- A user's choice per notification kind and channel (`in_app`, `email`); no row means
-- the default (on).
CREATE TABLE notification_preferences (
    user_id TEXT NOT NULL REFERENCES users (id),
    kind    TEXT NOT NULL,
    channel TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind, channel)
);

-- Per-user settings; no row means the defaults (immediate email, English).
CREATE TABLE notification_settings (
    user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    email_mode TEXT NOT NULL,
    locale     TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Workspaces a user muted: no notification of any kind or channel from them.
CREATE TABLE workspace_mutes (
    user_id      TEXT NOT NULL REFERENCES users (id),
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    created_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);

-- Single-use WebSocket tickets (browsers cannot send Authorization on a WebSocket):
-- only the SHA-256 is stored; using one deletes it.
CREATE TABLE ws_tickets (
    ticket_hash TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
