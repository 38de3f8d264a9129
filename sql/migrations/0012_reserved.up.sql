-- Version 0012 is reserved for a change developed alongside 0013; until
-- it lands this placeholder keeps the versions contiguous.
SELECT 1;
