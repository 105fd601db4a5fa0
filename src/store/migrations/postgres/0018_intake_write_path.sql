-- The intake's write path (issue 10, load). Every customer message on an open case changed
-- last_message_at, a column of the threading index, so each one rewrote that index's entry
-- (and, on PostgreSQL, could not be a HOT update). The threading lookup finds a customer's
-- few active cases by customer and channel (neither ever changes); it filters and orders them
-- by last_message_at itself.
-- The two due-instant indexes serve no query: deadlines are found through sla_clock, and no
-- statement filters on acked_at IS NULL or resolved_at IS NULL.
DROP INDEX cases_customer_open;
CREATE INDEX cases_customer_active ON cases (customer, channel)
    WHERE status IN ('open', 'acknowledged', 'in_progress');
DROP INDEX cases_ack_due;
DROP INDEX cases_resolve_due;
