-- The per-sender acknowledgement cap applies to email only: index just the outbound email
-- rows, so SMS acks (most of the outbound volume) no longer pay for an index they never use.
DROP INDEX messages_out_to;
CREATE INDEX messages_email_ack_to ON messages (to_addr, created_at)
    WHERE direction = 'out' AND channel = 'email';
