-- leadscore 1.2 -> 1.3: each lead's stage history stays in order when transactions overlap.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.3'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- The instant of the stored stage (state_*.stage_at)
--------------------------------------------------------------------------------------------------

-- A statement records its stage changes at its transaction's time (now()), unless a scheduled run or
-- another transaction has meanwhile recorded one of its leads at a later instant: it then takes that
-- instant, so that a change is never dated before the one recorded ahead of it. NULL (rows written before
-- 1.3): unknown, taken as earlier than any transaction. No rewrite: the column is filled as rows change.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format('ALTER TABLE leadscore.state_%s ADD COLUMN stage_at timestamptz', t);
		EXECUTE format($c$COMMENT ON COLUMN leadscore.state_%s.stage_at IS
			'internal: the instant the stored stage was recorded for (a later statement records its changes no earlier)'$c$, t);
	END LOOP;
END
$$;
