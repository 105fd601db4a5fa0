-- The agents' work queue: active cases by resolve deadline (`GET /api/v1/cases`). Without an
-- index every page read and sorted all cases (19 ms at 114,000 cases, growing with every case
-- ever opened); this partial index holds only active cases, in the queue's order, so a page
-- is a walk of 50 entries (0.1 ms). The query repeats the predicate word for word
-- (`store::sql::case_filter`). New cases enter it near its end (deadlines grow with time). On
-- SQLite a reply that changes neither status nor deadline leaves it alone; PostgreSQL adds an
-- entry to every index of a row it cannot update in place.
CREATE INDEX cases_active_due ON cases (resolve_due_at, id)
    WHERE (status = 'open' OR status = 'acknowledged' OR status = 'in_progress');
