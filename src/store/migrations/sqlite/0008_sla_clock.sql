-- The clock of each case that still has a service-level step ahead: its next step, when it
-- falls due (UTC ms; NULL once every step is taken), the steps already taken (bit mask, see src/sla), and a lease while one
-- scheduler fires it. The scheduler reads the earliest due_at; it never scans the cases.
CREATE TABLE sla_clock (
    case_id     INTEGER PRIMARY KEY REFERENCES cases (id),
    step        TEXT    NOT NULL,
    due_at      INTEGER,
    fired       INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER
);
CREATE INDEX sla_clock_due ON sla_clock (due_at) WHERE due_at IS NOT NULL;

-- The SLA report: cases by the instant they opened, a case's return-visit answers.
CREATE INDEX cases_opened ON cases (opened_at);
CREATE INDEX survey_answers_case ON survey_answers (case_id);
