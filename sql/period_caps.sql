-- Frequency caps per period (1.2): a rule counts at most max_per_period matching events per lead in each
-- period (fixed length, counted in UTC from Monday 2000-01-03): the earliest ones of the period, exact
-- under out-of-order inserts and deletes; bad caps refused when written.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
SET TimeZone = 'UTC';
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.activity (id serial PRIMARY KEY, lead int, type text, at timestamptz NOT NULL);
CREATE INDEX ON crm.activity (lead);
CREATE TABLE crm.note (lead int, body text);
INSERT INTO leadscore.model (name) VALUES ('caps');
INSERT INTO leadscore.model (name, half_life) VALUES ('decaying', '1 day');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.activity', 'lead', 'at')
  FROM unnest(ARRAY['caps', 'decaying']) m;
SELECT leadscore.track_events('caps', 'crm.note', 'lead');
-- Like Adobe's: a visit scores 1, at most 20 a day; a download 5, at most 2 a week (ISO weeks in UTC).
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
SELECT m, 'visit', 'crm.activity', $$type = 'visit'$$, 1, 20, '1 day' FROM unnest(ARRAY['caps', 'decaying']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'download', 'crm.activity', $$type = 'download'$$, 5, 2, '7 days');
SELECT model, name, max_per_period, period FROM leadscore.rule ORDER BY model, name;
INSERT INTO crm.lead VALUES (1), (2);

-- 25 visits of lead 1 on Monday 2 March 2026, at 08:01, 08:02 ... 08:25: the first 20 count.
INSERT INTO crm.activity (lead, type, at)
SELECT 1, 'visit', timestamptz '2026-03-02 08:00' + i * interval '1 minute' FROM generate_series(1, 25) i;
CREATE FUNCTION pg_temp.visits() RETURNS TABLE (as_of text, caps numeric, decaying numeric) LANGUAGE sql AS $$
	SELECT to_char(t, 'Dy HH24:MI:SS'),
	       (SELECT round(score::numeric, 6) FROM leadscore.scores_at('caps', t) WHERE lead = '1'),
	       (SELECT round(score::numeric, 6) FROM leadscore.scores_at('decaying', t) WHERE lead = '1')
	  FROM unnest(ARRAY[timestamptz '2026-03-02 08:19:30', '2026-03-02 08:20:30', '2026-03-02 08:21:30',
	                    '2026-03-03 00:00']) t ORDER BY t
$$;
SELECT * FROM pg_temp.visits();
SELECT rule, hits, points, raw, round(decayed::numeric, 6) AS decayed
  FROM leadscore.explain('decaying', '1', '2026-03-03 00:00');
-- A visit dated 07:00 the same day arrives late: it counts, and the visit of 08:20 no longer does
-- (from 08:19:30 on the cap is reached one visit earlier; the decayed total holds an older visit).
INSERT INTO crm.activity (lead, type, at) VALUES (1, 'visit', '2026-03-02 07:00');
SELECT * FROM pg_temp.visits();
-- Deleting a counted visit (08:05) promotes the first one beyond the cap (08:20, then 08:21 once 07:00 goes).
DELETE FROM crm.activity WHERE at = '2026-03-02 08:05';
SELECT * FROM pg_temp.visits();
DELETE FROM crm.activity WHERE at = '2026-03-02 07:00';
SELECT * FROM pg_temp.visits();
-- The next day counts afresh (a day of UTC: 23:30 in New York on Monday is Tuesday in UTC).
INSERT INTO crm.activity (lead, type, at) VALUES (1, 'visit', '2026-03-02 23:30:00-05'), (1, 'visit', '2026-03-03 12:00');
SELECT rule, hits, points, raw FROM leadscore.explain('caps', '1', '2026-03-04') ORDER BY rule;

-- Downloads of lead 2, at most 2 per ISO week: Sunday 1 March (week of 23 February); Monday, Tuesday and
-- Wednesday of the week of 2 March (2 count); Sunday 8 March 22:00 in New York (Monday 9 March in UTC) and
-- Monday 9 March (2 count).
INSERT INTO crm.activity (lead, type, at) VALUES
	(2, 'download', '2026-03-01 12:00'), (2, 'download', '2026-03-02 12:00'), (2, 'download', '2026-03-03 12:00'),
	(2, 'download', '2026-03-04 12:00'), (2, 'download', '2026-03-08 22:00:00-05'), (2, 'download', '2026-03-09 12:00');
SELECT rule, hits, points, raw FROM leadscore.explain('caps', '2', '2026-03-10') WHERE rule = 'download';
SELECT lead, score FROM leadscore.scores_at('caps', '2026-03-05') ORDER BY lead;

-- Live scores equal a recompute from scratch, now and in the past.
CREATE TEMP TABLE live AS
SELECT m, t, s.* FROM unnest(ARRAY['caps', 'decaying']) m,
       unnest(ARRAY[timestamptz '2026-03-02 08:20:30', '2026-03-03 06:00', '2026-03-09 08:00', '2026-04-01']) t,
       LATERAL leadscore.scores_at(m, t) s;
SELECT leadscore.recompute('caps'), leadscore.recompute('decaying');
SELECT count(*) AS differences
  FROM live l FULL JOIN (SELECT m, t, s.* FROM unnest(ARRAY['caps', 'decaying']) m,
                                unnest(ARRAY[timestamptz '2026-03-02 08:20:30', '2026-03-03 06:00', '2026-03-09 08:00',
                                             '2026-04-01']) t,
                                LATERAL leadscore.scores_at(m, t) s) r USING (m, t, lead)
 WHERE l.score IS DISTINCT FROM r.score OR abs(l.score - r.score) > 1e-9;

-- One statement that fires several triggers of a table: INSERT ... ON CONFLICT DO UPDATE (the UPDATE's,
-- then the INSERT's), MERGE (DELETE's, UPDATE's, INSERT's), WITH. A lead rebuilt by the first (its capped
-- visits re-read) read the rows of the others too: they do not count it again. The calls are uncapped.
INSERT INTO leadscore.rule (model, name, source, condition, points)
VALUES ('caps', 'call', 'crm.activity', $$type = 'call'$$, 3);
CREATE FUNCTION pg_temp.differences() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	-- The event count each state keeps (internal), against the rows.
	SELECT count(*) INTO n FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
	 WHERE s.n_events <> (SELECT count(*) FROM crm.activity a WHERE a.lead = s.lead)
	                     + CASE WHEN m.name = 'caps' THEN (SELECT count(*) FROM crm.note o WHERE o.lead = s.lead) ELSE 0 END;
	IF n > 0 THEN
		RAISE EXCEPTION '% states count their events wrong', n;
	END IF;
	CREATE TEMP TABLE live_now AS SELECT m, s.* FROM unnest(ARRAY['caps', 'decaying']) m,
	       LATERAL leadscore.scores_at(m, '2026-04-01') s;
	PERFORM leadscore.recompute('caps'), leadscore.recompute('decaying');
	SELECT count(*) INTO n
	  FROM live_now l FULL JOIN (SELECT m, s.* FROM unnest(ARRAY['caps', 'decaying']) m,
	                                    LATERAL leadscore.scores_at(m, '2026-04-01') s) r USING (m, lead)
	 WHERE l.score IS DISTINCT FROM r.score OR abs(l.score - r.score) > 1e-9;
	DROP TABLE live_now;
	RETURN n;
END $$;
-- Lead 2's first download becomes a visit of lead 1, and lead 1 gets a call, in one statement.
INSERT INTO crm.activity (id, lead, type, at)
VALUES ((SELECT min(id) FROM crm.activity WHERE lead = 2), 1, 'visit', '2026-03-02 09:00'),
       (DEFAULT, 1, 'call', '2026-03-02 09:30')
ON CONFLICT (id) DO UPDATE SET lead = EXCLUDED.lead, type = EXCLUDED.type, at = EXCLUDED.at;
SELECT rule, hits FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule IN ('call', 'visit') ORDER BY rule;
SELECT pg_temp.differences();
-- A visit of lead 1 moves to lead 2, another is deleted, a call is added.
MERGE INTO crm.activity a
USING (VALUES (1, 'visit', timestamptz '2026-03-02 08:11', 'move'), (1, 'visit', '2026-03-02 08:12', 'drop'),
              (1, 'call', '2026-03-02 11:00', 'add')) v (lead, type, at, what)
   ON a.lead = v.lead AND a.type = v.type AND a.at = v.at
 WHEN MATCHED AND v.what = 'move' THEN UPDATE SET lead = 2
 WHEN MATCHED AND v.what = 'drop' THEN DELETE
 WHEN NOT MATCHED THEN INSERT (lead, type, at) VALUES (v.lead, v.type, v.at);
SELECT 1 AS lead, rule, hits FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule IN ('call', 'visit')
UNION ALL
SELECT 2, rule, hits FROM leadscore.explain('caps', '2', '2026-03-04') WHERE rule IN ('call', 'visit') ORDER BY 1, 2;
SELECT pg_temp.differences();
-- A visit moved a minute later, and a call for its lead, by a WITH query.
WITH u AS (UPDATE crm.activity SET at = at + interval '1 minute' WHERE lead = 1 AND at = '2026-03-02 08:13'
           RETURNING lead)
INSERT INTO crm.activity (lead, type, at) SELECT lead, 'call', '2026-03-02 12:00' FROM u;
SELECT rule, hits FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule IN ('call', 'visit') ORDER BY rule;
SELECT pg_temp.differences();
-- An engagement reset (whose trigger rebuilds the lead from all its events) and a call, by a WITH query.
WITH r AS (INSERT INTO leadscore.engagement_reset_int4 (model_id, lead, reset_at)
           SELECT id, 1, '2026-03-02 08:30' FROM leadscore.model WHERE name = 'caps' RETURNING lead)
INSERT INTO crm.activity (lead, type, at) SELECT lead, 'call', '2026-03-02 12:30' FROM r;
SELECT rule, hits FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule IN ('call', 'visit') ORDER BY rule;
SELECT pg_temp.differences();
DELETE FROM leadscore.engagement_reset_int4;
DELETE FROM leadscore.rule WHERE model = 'caps' AND name = 'call';
DELETE FROM crm.activity WHERE type = 'call';

-- Changing the cap rescores the model.
UPDATE leadscore.rule SET max_per_period = 3 WHERE model = 'caps' AND name = 'visit';
SELECT rule, hits, points, raw FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule = 'visit';
UPDATE leadscore.rule SET max_per_period = NULL, period = NULL WHERE model = 'caps' AND name = 'visit';
SELECT rule, hits, points, raw FROM leadscore.explain('caps', '1', '2026-03-04') WHERE rule = 'visit';

-- Refused when written: by constraints (terse: the failing row would list every column of the rule table)...
\set VERBOSITY terse
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'zero', 'crm.activity', 'true', 1, 0, '1 day');
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period)
VALUES ('caps', 'no period', 'crm.activity', 'true', 1, 5);
INSERT INTO leadscore.rule (model, name, source, condition, points, period)
VALUES ('caps', 'no count', 'crm.activity', 'true', 1, '1 day');
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'empty period', 'crm.activity', 'true', 1, 5, '0 days');
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'negative period', 'crm.activity', 'true', 1, 5, '-1 hour');
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'monthly', 'crm.activity', 'true', 1, 5, '1 month');
-- ... and by the rule check.
\set VERBOSITY default
\set SHOW_CONTEXT never
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'fit', 'crm.lead', 'true', 1, 5, '1 day');
\set VERBOSITY terse
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period, once_per_lead)
VALUES ('caps', 'once', 'crm.activity', 'true', 1, 5, '1 day', true);
UPDATE leadscore.rule SET once_per_lead = true WHERE model = 'decaying' AND name = 'visit';
\set VERBOSITY default
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period)
VALUES ('caps', 'untimed', 'crm.note', 'true', 1, 5, '1 day');
-- Nothing changed.
SELECT model, name, max_per_period, period, once_per_lead FROM leadscore.rule ORDER BY model, name;

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
