-- The dispatcher's daily caps count each recipient's campaign messages of the last 24 hours
-- (store::standings). Without an index on the recipient that query read the whole messages
-- table once per 500 recipients. Only campaign kinds are indexed, so acks and replies (the
-- intake's inserts) do not pay for it; the predicate is the query's own, word for word, so
-- SQLite's planner can use the partial index.
CREATE INDEX messages_campaign_to ON messages (to_addr, created_at)
    WHERE direction = 'out'
    AND kind IN ('payment_reminder', 'notice', 'survey', 'research', 'marketing', 'urgent_notice');
