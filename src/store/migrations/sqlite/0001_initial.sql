-- switchboard schema, SQLite. Instants are UTC milliseconds since the epoch (INTEGER), so
-- comparisons are exact and identical on both backends.

CREATE TABLE cases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT    NOT NULL,            -- sms | email
    customer        TEXT    NOT NULL,            -- E.164 number or email address
    category        TEXT    NOT NULL,            -- complaint | fault | inquiry
    status          TEXT    NOT NULL,            -- open | acknowledged | resolved | closed
    tier            INTEGER NOT NULL DEFAULT 1,  -- 1 service window .. 4 national centre
    lang            TEXT    NOT NULL,
    subject         TEXT,
    rules_version   TEXT    NOT NULL,
    opened_at       INTEGER NOT NULL,
    last_message_at INTEGER NOT NULL,
    ack_due_at      INTEGER NOT NULL,
    resolve_due_at  INTEGER NOT NULL,
    acked_at        INTEGER,
    resolved_at     INTEGER,
    message_count   INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX cases_customer_open ON cases (customer, last_message_at)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX cases_ack_due ON cases (ack_due_at) WHERE acked_at IS NULL;
CREATE INDEX cases_resolve_due ON cases (resolve_due_at) WHERE resolved_at IS NULL;

CREATE TABLE case_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,                    -- opened | reply | escalated | acked | resolved ...
    detail  TEXT
);
CREATE INDEX case_events_case ON case_events (case_id);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    direction     TEXT    NOT NULL,              -- in | out
    channel       TEXT    NOT NULL,              -- sms | email
    dialect       TEXT    NOT NULL,              -- kannel | jasmin | twilio | generic | email; out: driver
    external_id   TEXT,                          -- the bridge's id of an inbound message
    dedupe_key    TEXT,                          -- dialect:external_id (unique, below)
    content_hash  TEXT,                          -- id-less dialects: sha256(channel|from|to|text)
    from_addr     TEXT    NOT NULL,
    to_addr       TEXT    NOT NULL,
    subject       TEXT,
    body          TEXT    NOT NULL,
    raw           BLOB,                          -- the payload as received, for audit and replay
    category      TEXT,
    intent        TEXT,
    rules_version TEXT,
    case_id       INTEGER REFERENCES cases (id),
    kind          TEXT,                          -- out: ack | reply | notice | marketing ...
    status        TEXT    NOT NULL,              -- in: received; out: queued | sent | accepted | delivered | failed
    encoding      TEXT,                          -- gsm7 | ucs2
    segments      INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    provider_id   TEXT,                          -- the bridge's id of an outbound message
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_dedupe ON messages (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX messages_content_hash ON messages (content_hash, created_at) WHERE content_hash IS NOT NULL;
CREATE INDEX messages_case ON messages (case_id);
CREATE INDEX messages_provider ON messages (provider_id) WHERE provider_id IS NOT NULL;

-- Work queue of sends; a row exists while a message still has to go out.
CREATE TABLE outbox (
    message_id  INTEGER PRIMARY KEY REFERENCES messages (id),
    channel     TEXT    NOT NULL,
    not_before  INTEGER NOT NULL,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (channel, not_before);

-- Consent state per customer address (opt-out evidence for commercial SMS).
CREATE TABLE contacts (
    channel        TEXT    NOT NULL,
    address        TEXT    NOT NULL,
    opted_out_at   INTEGER,
    opted_in_at    INTEGER,
    source_message INTEGER,                      -- the message that changed the state
    PRIMARY KEY (channel, address)
);

-- Every delivery report as received (status updates are applied to messages too).
CREATE TABLE delivery_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER,
    received_at INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    detail      TEXT
);
CREATE INDEX delivery_reports_message ON delivery_reports (message_id);
