-- Email notifications (issue 6): the address notifications go to, the email outbox and
-- the digest queue. Same tables in both dialects; see 0002 for the conventions.

-- Where a user's notification emails go; no address means no email.
ALTER TABLE notification_settings ADD COLUMN email TEXT;

-- One row per email to send. `idempotency_key` is UNIQUE (`event:<event id>` for an
-- immediate email, `digest:<user>:<mode>:<window end>` for a digest): the row is written
-- in the same transaction as the notification (or the digest's bookkeeping), so a crash
-- neither loses nor duplicates it, and the Message-ID derives from the key, so a resend
-- after a crash is recognisable. `status`: pending → sending (claimed until
-- `lease_until`) → sent | failed; a lapsed lease makes the row claimable again.
CREATE TABLE email_outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    idempotency_key TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    category        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    unsubscribe_url TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    CONSTRAINT email_outbox_key UNIQUE (idempotency_key)
);
CREATE INDEX email_outbox_due_idx ON email_outbox (status, next_attempt_at);

-- Notifications waiting for their user's hourly or daily digest: one row per
-- notification, grouped by (user, mode, window end) when the window closes.
CREATE TABLE email_digest_items (
    notification_id TEXT PRIMARY KEY NOT NULL REFERENCES notifications (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    mode            TEXT NOT NULL,
    window_end      TEXT NOT NULL,
    queued_at       TEXT
);
CREATE INDEX email_digest_items_due_idx ON email_digest_items (queued_at, window_end);
