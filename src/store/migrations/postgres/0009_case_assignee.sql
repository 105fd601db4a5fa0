-- The agent (token name) a case is assigned to, for the work queue.
ALTER TABLE cases ADD COLUMN assignee TEXT;
CREATE INDEX cases_assignee ON cases (assignee) WHERE assignee IS NOT NULL;
