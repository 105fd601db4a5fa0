-- A case's tier is one of the four support tiers. The code reads a value outside 1-4 as the
-- nearest tier; a step that then changes the tier "only if it is still the one read" would
-- never match such a row and be retried forever, so existing rows are brought into range.
UPDATE cases SET tier = 1 WHERE tier < 1;
UPDATE cases SET tier = 4 WHERE tier > 4;
