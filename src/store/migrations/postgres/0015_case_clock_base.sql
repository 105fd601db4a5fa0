-- When a case's SLA clock counts from: NULL is its opening. A case reopened after its
-- resolution deadline starts a new round from the reopening (a new 72 hours, its ladder
-- again), instead of having every step behind it and no deadline at all.
ALTER TABLE cases ADD COLUMN sla_base_at BIGINT;
-- When a person last answered (a reply or a logged contact; `acked_at` keeps the first): a
-- new round's answer step counts only an answer given in that round.
ALTER TABLE cases ADD COLUMN answered_at BIGINT;
