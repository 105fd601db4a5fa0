-- Parts of concatenated SMS that the bridge passed through instead of reassembling (a 16-bit
-- reference UDH through Jasmin, Kannel with sms-combine-concatenated-mo off). Each part is
-- stored before the bridge gets its 2xx; when the last one arrives (or the group times out)
-- intake runs once on the joined text and the group is marked done. Done parts stay a day so
-- a bridge's late retry of a part is recognised as a duplicate by its id.
CREATE TABLE sms_parts (
    id           BIGSERIAL PRIMARY KEY,
    group_key    TEXT NOT NULL,        -- dialect, sender, receiver, reference, total
    seq          BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    dialect      TEXT NOT NULL,
    dedupe_key   TEXT,                 -- dialect:sender:bridge id of the part
    external_id  TEXT,
    from_addr    TEXT NOT NULL,
    to_addr      TEXT NOT NULL,
    body         TEXT NOT NULL,
    raw          BYTEA,
    received_at  BIGINT NOT NULL,
    done         BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX sms_parts_open ON sms_parts (group_key, seq) WHERE done = 0;
CREATE UNIQUE INDEX sms_parts_dedupe ON sms_parts (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX sms_parts_due ON sms_parts (received_at) WHERE done = 0;
