-- Case lifecycle, part two: an "in_progress" status (the open-case index now covers it), the
-- resolution code, the case's city (tier-2 routing and the city filter), the case a new case
-- was opened from (a message about a closed case), and return visits.
DROP INDEX cases_customer_open;
CREATE INDEX cases_customer_open ON cases (customer, last_message_at)
    WHERE status IN ('open', 'acknowledged', 'in_progress');
ALTER TABLE cases ADD COLUMN resolution_code TEXT;
ALTER TABLE cases ADD COLUMN city TEXT;
ALTER TABLE cases ADD COLUMN linked_case_id INTEGER;
CREATE INDEX cases_city ON cases (city);

-- One return visit per resolved case: scheduled (due_at = when the survey goes out), sent
-- (due_at = when an unanswered visit closes the case), then answered, expired, skipped or
-- cancelled (due_at NULL). The scheduler claims due rows with a lease, like sla_clock.
CREATE TABLE return_visits (
    case_id     INTEGER PRIMARY KEY REFERENCES cases (id),
    channel     TEXT    NOT NULL,
    customer    TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    due_at      INTEGER,
    sent_at     INTEGER,
    answer      TEXT,
    answered_at INTEGER,
    lease_until INTEGER
);
CREATE INDEX return_visits_due ON return_visits (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX return_visits_customer ON return_visits (customer, sent_at);
