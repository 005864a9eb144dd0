-- Notifications (issue 6): what the dispatcher makes of `events`, per-user preferences,
-- per-workspace mutes, and single-use WebSocket tickets. Same tables in both dialects;
-- see 0002 for the conventions.

-- One row per delivered in-app notification. `event_id` is UNIQUE: an event processed
-- twice (a retried pass, two nodes racing) makes one notification. Deleting is soft
-- (`deleted_at`) so the row keeps guarding its event.
CREATE TABLE notifications (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    event_id      TEXT COLLATE "C" NOT NULL,
    user_id       TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    kind          TEXT COLLATE "C" NOT NULL,
    actor_id      TEXT COLLATE "C" REFERENCES users (id),
    resource_type TEXT COLLATE "C" NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    payload       TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    read_at       TEXT,
    deleted_at    TEXT,
    CONSTRAINT notifications_event_key UNIQUE (event_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id);

-- A user's choice per notification kind and channel (`in_app`, `email`); no row means
-- the default (on).
CREATE TABLE notification_preferences (
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    kind    TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    enabled BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind, channel)
);

-- Per-user settings; no row means the defaults (immediate email, English).
CREATE TABLE notification_settings (
    user_id    TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES users (id),
    email_mode TEXT COLLATE "C" NOT NULL,
    locale     TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

-- Workspaces a user muted: no notification of any kind or channel from them.
CREATE TABLE workspace_mutes (
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    created_at   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, workspace_id)
);

-- Single-use WebSocket tickets (browsers cannot send Authorization on a WebSocket):
-- only the SHA-256 is stored; using one deletes it.
CREATE TABLE ws_tickets (
    ticket_hash TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    created_at  TEXT COLLATE "C" NOT NULL,
    expires_at  TEXT COLLATE "C" NOT NULL
);
