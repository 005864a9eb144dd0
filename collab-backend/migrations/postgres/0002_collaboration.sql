-- Users, tokens, the organization tree, roles and grants, workspaces and the audit log.
-- Tasks, comments, reactions, mentions, the notification outbox, files and shares come
-- in later migrations. Same tables in both dialects; ids are UUID v7 text, times RFC 3339 text,
-- booleans and counters integers, JSON payloads text.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    username      TEXT COLLATE "C" NOT NULL,
    display_name  TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username)
);
CREATE INDEX users_org_idx ON users (org_id);

-- Session and personal API tokens: only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    kind       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    token_hash TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C",
    revoked_at TEXT COLLATE "C",
    CONSTRAINT tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX tokens_user_idx ON tokens (user_id, kind);

CREATE TABLE departments (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    parent_id  TEXT COLLATE "C" REFERENCES departments (id),
    name       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX departments_parent_idx ON departments (org_id, parent_id);

CREATE TABLE teams (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    department_id TEXT COLLATE "C" REFERENCES departments (id),
    name          TEXT COLLATE "C" NOT NULL,
    slug          TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    CONSTRAINT teams_slug_key UNIQUE (org_id, slug)
);

CREATE TABLE workspaces (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id        TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    team_id       TEXT COLLATE "C" NOT NULL REFERENCES teams (id),
    name          TEXT COLLATE "C" NOT NULL,
    task_statuses TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX workspaces_team_idx ON workspaces (team_id);

-- Built-in roles have org_id NULL; custom roles belong to one organization.
CREATE TABLE roles (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id     TEXT COLLATE "C" REFERENCES organizations (id),
    name       TEXT COLLATE "C" NOT NULL,
    extends_id TEXT COLLATE "C" REFERENCES roles (id),
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX roles_org_name_key ON roles (org_id, name);

CREATE TABLE role_permissions (
    role_id    TEXT COLLATE "C" NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (role_id, permission)
);

-- A user holds a role on a scope: org, department, team or workspace. Team members are
-- the users with a grant on the team.
CREATE TABLE grants (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id     TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    role_id    TEXT COLLATE "C" NOT NULL REFERENCES roles (id),
    scope_kind TEXT COLLATE "C" NOT NULL,
    scope_id   TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    CONSTRAINT grants_key UNIQUE (user_id, scope_kind, scope_id, role_id)
);
CREATE INDEX grants_scope_idx ON grants (scope_kind, scope_id);

CREATE TABLE audit_log (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    org_id      TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    actor_id    TEXT COLLATE "C",
    action      TEXT COLLATE "C" NOT NULL,
    target_kind TEXT COLLATE "C" NOT NULL,
    target_id   TEXT COLLATE "C" NOT NULL,
    detail      TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_log_org_idx ON audit_log (org_id, id);

-- The built-in roles, with their names as ids; their permissions are defined in code
-- (`authz::builtin`), each extending the one below it.
INSERT INTO roles (id, org_id, name, extends_id, created_at) VALUES
    ('guest',  NULL, 'guest',  NULL,     '2025-01-01T00:00:00.000000Z'),
    ('member', NULL, 'member', 'guest',  '2025-01-01T00:00:00.000000Z'),
    ('admin',  NULL, 'admin',  'member', '2025-01-01T00:00:00.000000Z'),
    ('owner',  NULL, 'owner',  'admin',  '2025-01-01T00:00:00.000000Z');
