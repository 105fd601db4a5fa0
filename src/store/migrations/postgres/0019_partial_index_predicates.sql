-- Partial-index predicates as chains of equalities (issue 10, load). SQLite evaluates a
-- partial index's WHERE for every row inserted into its table, and codes an IN list of more
-- than two constants as a temporary b-tree that each run of the statement builds and drops:
-- every message insert built one for messages_campaign_to (six kinds) and every new case one
-- for cases_customer_active, as did the threading lookup that repeats that predicate
-- (sqlite3BtreeOpen/Close and page-cache truncation on the writer thread under
-- benches/load.sh). The same predicates written with = and OR are plain comparisons. The
-- queries that use these indexes repeat the predicates word for word (tests in sql.rs and
-- domain check it), so both engines' planners prove them.
DROP INDEX cases_customer_active;
CREATE INDEX cases_customer_active ON cases (customer, channel)
    WHERE (status = 'open' OR status = 'acknowledged' OR status = 'in_progress');
DROP INDEX messages_campaign_to;
CREATE INDEX messages_campaign_to ON messages (to_addr, created_at)
    WHERE direction = 'out'
    AND (kind = 'payment_reminder' OR kind = 'notice' OR kind = 'survey' OR kind = 'research' OR kind = 'marketing' OR kind = 'urgent_notice');
