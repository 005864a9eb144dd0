-- Organizations: the tenant root every later resource (users, workspaces, tasks) hangs off.
-- ids are UUID v7 strings (time-ordered, so ORDER BY id is creation order). COLLATE "C"
-- makes text comparison bytewise whatever the server's locale, which cursor pagination
-- relies on. Timestamps are RFC 3339 UTC text with fixed microsecond precision (the
-- `Any` driver has no timestamp type; both dialects then store the same bytes).
CREATE TABLE organizations (
    id         TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    slug       TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    CONSTRAINT organizations_slug_key UNIQUE (slug)
);
