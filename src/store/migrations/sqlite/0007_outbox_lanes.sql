-- Outbox lanes: 0 replies, acks and deadline notices; 1 service messages (reminders, return
-- visits, notices); 2 bulk (marketing, research). Workers claim the lowest lane first and give
-- the others a share of every batch, so a 100,000-recipient batch never holds up an ack.
ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (channel, lane, not_before);
