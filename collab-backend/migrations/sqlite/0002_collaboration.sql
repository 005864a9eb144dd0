-- Users, tokens, the organization tree, roles and grants, workspaces and the audit log.
-- Tasks, comments, reactions, mentions, the notification outbox, files and shares come
-- in later migrations. Same tables in both dialects; ids are UUID v7 text, times RFC 3339 text,
-- booleans and counters integers, JSON payloads text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    org_id        TEXT NOT NULL REFERENCES organizations (id),
    username      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);
CREATE INDEX users_org_idx ON users (org_id);

-- Session and personal API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    CONSTRAINT tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX tokens_user_idx ON tokens (user_id, kind);

CREATE TABLE departments (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    parent_id  TEXT REFERENCES departments (id),
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX departments_parent_idx ON departments (org_id, parent_id);

CREATE TABLE teams (
    id            TEXT PRIMARY KEY NOT NULL,
    org_id        TEXT NOT NULL REFERENCES organizations (id),
    department_id TEXT REFERENCES departments (id),
    name          TEXT NOT NULL,
    slug          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    CONSTRAINT teams_slug_key UNIQUE (org_id, slug)
);

CREATE TABLE workspaces (
    id            TEXT PRIMARY KEY NOT NULL,
    org_id        TEXT NOT NULL REFERENCES organizations (id),
    team_id       TEXT NOT NULL REFERENCES teams (id),
    name          TEXT NOT NULL,
    task_statuses TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX workspaces_team_idx ON workspaces (team_id);

-- Built-in roles have org_id NULL; custom roles belong to one organization.
CREATE TABLE roles (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT REFERENCES organizations (id),
    name       TEXT NOT NULL,
    extends_id TEXT REFERENCES roles (id),
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX roles_org_name_key ON roles (org_id, name);

CREATE TABLE role_permissions (
    role_id    TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role_id, permission)
);

-- A user holds a role on a scope: org, department, team or workspace. Team members are
-- the users with a grant on the team.
CREATE TABLE grants (
    id         TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role_id    TEXT NOT NULL REFERENCES roles (id),
    scope_kind TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT grants_key UNIQUE (user_id, scope_kind, scope_id, role_id)
);
CREATE INDEX grants_scope_idx ON grants (scope_kind, scope_id);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, id);

-- The built-in roles, with their names as ids; their permissions are defined in code
-- (`authz::builtin`), each extending the one below it.
INSERT INTO roles (id, org_id, name, extends_id, created_at) VALUES
    ('guest',  NULL, 'guest',  NULL,     '2025-01-01T00:00:00.000000Z'),
    ('member', NULL, 'member', 'guest',  '2025-01-01T00:00:00.000000Z'),
    ('admin',  NULL, 'admin',  'member', '2025-01-01T00:00:00.000000Z'),
    ('owner',  NULL, 'owner',  'admin',  '2025-01-01T00:00:00.000000Z');
