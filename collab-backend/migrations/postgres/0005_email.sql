-- Email notifications (issue 6): the address notifications go to, the email outbox and
-- the digest queue. Same tables in both dialects; see 0002 for the conventions.

-- Where a user's notification emails go; no address means no email.
ALTER TABLE notification_settings ADD COLUMN email TEXT COLLATE "C";

-- One row per email to send. `idempotency_key` is UNIQUE (`event:<event id>` for an
-- immediate email, `digest:<user>:<mode>:<window end>` for a digest): the row is written
-- in the same transaction as the notification (or the digest's bookkeeping), so a crash
-- neither loses nor duplicates it, and the Message-ID derives from the key, so a resend
-- after a crash is recognisable. `status`: pending → sending (claimed until
-- `lease_until`) → sent | failed; a lapsed lease makes the row claimable again.
CREATE TABLE email_outbox (
    id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    category        TEXT COLLATE "C" NOT NULL,
    recipient       TEXT COLLATE "C" NOT NULL,
    subject         TEXT COLLATE "C" NOT NULL,
    text_body       TEXT COLLATE "C" NOT NULL,
    html_body       TEXT COLLATE "C" NOT NULL,
    unsubscribe_url TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TEXT COLLATE "C" NOT NULL,
    lease_until     TEXT COLLATE "C",
    last_error      TEXT,
    created_at      TEXT COLLATE "C" NOT NULL,
    sent_at         TEXT,
    CONSTRAINT email_outbox_key UNIQUE (idempotency_key)
);
CREATE INDEX email_outbox_due_idx ON email_outbox (status, next_attempt_at);

-- Notifications waiting for their user's hourly or daily digest: one row per
-- notification, grouped by (user, mode, window end) when the window closes.
CREATE TABLE email_digest_items (
    notification_id TEXT COLLATE "C" PRIMARY KEY NOT NULL REFERENCES notifications (id),
    user_id         TEXT COLLATE "C" NOT NULL REFERENCES users (id),
    mode            TEXT COLLATE "C" NOT NULL,
    window_end      TEXT COLLATE "C" NOT NULL,
    queued_at       TEXT COLLATE "C"
);
CREATE INDEX email_digest_items_due_idx ON email_digest_items (queued_at, window_end);
