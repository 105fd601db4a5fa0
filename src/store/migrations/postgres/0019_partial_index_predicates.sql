-- Partial-index predicates as chains of equalities: SQLite only (see its 0019). On SQLite an
-- IN list of more than two constants in a partial index's WHERE builds a temporary table on
-- every insert; PostgreSQL evaluates it as an array comparison, and its planner proves
-- `status IN (...)` and `(status = ... OR ...)` from each other, so the indexes of 0013 and
-- 0018 serve the queries' new text as they are. Rebuilding them here would only lock the
-- messages table at start-up. This migration keeps the two engines' numbering equal.
SELECT 1;
