-- Several instances on one database.
-- A running campaign is paced by one dispatcher at a time: the instance holding its lease.
ALTER TABLE campaigns ADD COLUMN lease_owner TEXT;
ALTER TABLE campaigns ADD COLUMN lease_until BIGINT;
-- The bridge's rate is the deployment's, not each instance's: every claim takes its sends
-- from one token bucket per channel.
CREATE TABLE send_rates (
    channel TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at BIGINT NOT NULL
);
