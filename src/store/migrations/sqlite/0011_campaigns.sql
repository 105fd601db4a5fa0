-- Outbound batches. A campaign's recipients are its CSV rows (seq = the line), each with its
-- address on the channel it goes out on, its template variables and its consent evidence;
-- state pending -> queued (message_id set) or suppressed (reason). Sent, delivered and failed
-- are the queued message's own status.
CREATE TABLE campaigns (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- payment_reminder | notice | survey | research | marketing
    channel      TEXT    NOT NULL,   -- sms | email | own
    template     TEXT    NOT NULL,
    subject      TEXT,
    status       TEXT    NOT NULL,   -- draft | running | recurring | paused | done | cancelled
    start_at     INTEGER NOT NULL,
    valid_until  INTEGER,
    rate_per_sec REAL NOT NULL,
    urgent       INTEGER NOT NULL DEFAULT 0,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    note         TEXT,
    -- Recurring: a cron in time.zone; each occurrence runs as a child campaign (parent_id)
    -- with a copy of the recipients. next_run_at is the parent's next occurrence.
    cron         TEXT,
    parent_id    INTEGER,
    next_run_at  INTEGER
);
CREATE INDEX campaigns_next_run ON campaigns (next_run_at) WHERE status = 'recurring';

CREATE TABLE campaign_recipients (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    seq         INTEGER NOT NULL,
    channel     TEXT   NOT NULL,
    address     TEXT   NOT NULL,
    vars        TEXT   NOT NULL,
    consent     TEXT,
    state       TEXT   NOT NULL,
    reason      TEXT,
    message_id  INTEGER,
    PRIMARY KEY (campaign_id, seq)
);
CREATE UNIQUE INDEX campaign_recipients_address ON campaign_recipients (campaign_id, channel, address);
CREATE INDEX campaign_recipients_pending ON campaign_recipients (campaign_id, seq) WHERE state = 'pending';
CREATE INDEX campaign_recipients_message ON campaign_recipients (message_id) WHERE message_id IS NOT NULL;

-- A campaign message is never sent after its campaign's validity.
ALTER TABLE outbox ADD COLUMN not_after INTEGER;

-- Keys the instances share (the unsubscribe links' HMAC key), made on first use.
CREATE TABLE app_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
