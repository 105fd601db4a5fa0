-- Several instances on one database.
-- A running campaign is paced by one dispatcher at a time: the instance holding its lease.
ALTER TABLE campaigns ADD COLUMN lease_owner TEXT;
ALTER TABLE campaigns ADD COLUMN lease_until BIGINT;
-- One import at a time into a campaign (a retry after a timed-out request would otherwise
-- interleave with the first, and a failed one's roll-back could take the other's rows), and
-- no start or resume while it runs.
ALTER TABLE campaigns ADD COLUMN import_until BIGINT;
-- The bridge's rate is the deployment's, not each instance's: every claim takes its sends
-- from one token bucket per channel.
CREATE TABLE send_rates (
    channel TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);
