-- leadscore 1.1 -> 1.2: per-period frequency caps, engagement resets, recency/frequency/volume and RFM
-- segments, hottest leads from an index.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.2'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Frequency caps per period (rule.max_per_period, rule.period)
--------------------------------------------------------------------------------------------------

-- In each period of fixed length (buckets counted in UTC from Monday 2000-01-03 00:00, so '1 day' is a UTC
-- day and '7 days' an ISO week), only the lead's earliest max_per_period matching events count. Event rules
-- on a table with a time column only, not with once_per_lead (checked by _check_rule).
ALTER TABLE leadscore.rule ADD COLUMN max_per_period integer, ADD COLUMN period interval;
ALTER TABLE leadscore.rule
	ADD CONSTRAINT "max_per_period must be positive" CHECK (max_per_period > 0),
	ADD CONSTRAINT "max_per_period and period go together" CHECK ((max_per_period IS NULL) = (period IS NULL)),
	ADD CONSTRAINT "period must be positive" CHECK (period > interval '0'),
	ADD CONSTRAINT "period must not count months or years (fixed length)"
		CHECK (extract(year FROM period) = 0 AND extract(month FROM period) = 0);
COMMENT ON COLUMN leadscore.rule.max_per_period IS
	'event rules: at most this many matching events count per lead and period (the earliest of each period)';
COMMENT ON COLUMN leadscore.rule.period IS
	'the period of max_per_period: fixed length, counted in UTC from Monday 2000-01-03 (''1 day'': UTC days, ''7 days'': ISO weeks)';

-- (end of frequency caps)

--------------------------------------------------------------------------------------------------
-- Engagement resets
--------------------------------------------------------------------------------------------------

-- (end of resets)

--------------------------------------------------------------------------------------------------
-- Recency, frequency, volume and RFM segments
--------------------------------------------------------------------------------------------------

-- (end of RFM)

--------------------------------------------------------------------------------------------------
-- Hottest leads from an index
--------------------------------------------------------------------------------------------------

-- (end of hottest leads)
