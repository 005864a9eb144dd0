-- Organizations: the tenant root every later resource (users, workspaces, tasks) hangs off.
-- ids are UUID v7 strings (time-ordered, so ORDER BY id is creation order);
-- timestamps are RFC 3339 UTC text with fixed microsecond precision, so they sort as text.
CREATE TABLE organizations (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    CONSTRAINT organizations_slug_key UNIQUE (slug)
);
