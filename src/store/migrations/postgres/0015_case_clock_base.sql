-- When a case's SLA clock counts from: NULL is its opening. A case reopened after its
-- resolution deadline starts a new round from the reopening (a new 72 hours, its ladder
-- again), instead of having every step behind it and no deadline at all.
ALTER TABLE cases ADD COLUMN sla_base_at BIGINT;
