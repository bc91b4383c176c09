-- Engagement resets (1.2): leadscore.reset records a reset of a lead's engagement for a model; events
-- before the reset that applies at a time count in no rule then (they remain activity); explain shows it;
-- deleting a reset undoes it; live scores equal a recompute at any time; bad calls refused.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
SET TimeZone = 'UTC';
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.activity (id serial PRIMARY KEY, lead int, type text, at timestamptz NOT NULL);
CREATE INDEX ON crm.activity (lead);
INSERT INTO leadscore.model (name) VALUES ('saas');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id'), leadscore.track_events('saas', 'crm.activity', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points, once_per_lead) VALUES
	('saas', 'visit', 'crm.activity', $$type = 'visit'$$, 5, false),
	('saas', 'demo', 'crm.activity', $$type = 'demo'$$, 20, true);
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('saas', 'quiet', '30 days', -3);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'warm', 10),
	('saas', 'MQL', 30);
INSERT INTO crm.lead VALUES (1), (2);
INSERT INTO crm.activity (lead, type, at) VALUES
	(1, 'visit', '2025-01-05'), (1, 'visit', '2025-01-10'), (1, 'demo', '2025-01-12'), (2, 'visit', '2025-01-06');
CREATE FUNCTION pg_temp.score(lead text, t timestamptz) RETURNS float8 LANGUAGE sql AS $$
	SELECT score FROM leadscore.scores_at('saas', t) s WHERE s.lead = score.lead
$$;
SELECT lead, score, stage FROM leadscore.scores WHERE model = 'saas' ORDER BY lead;

-- The deal is lost: lead 1's engagement starts afresh from 1 February.
SELECT leadscore.reset('saas', '1', '2025-02-01', 'deal lost');
SELECT model, lead, reset_at, reason, recorded_by = current_user AS by_me FROM leadscore.engagement_resets;
-- Now 0 (and cold, recorded as a stage change); before the reset, as it was. Inactivity still counts from the
-- last event (12 January): -3 from 11 February.
SELECT lead, score, stage FROM leadscore.scores WHERE model = 'saas' ORDER BY lead;
SELECT pg_temp.score('1', '2025-01-31') AS before, pg_temp.score('1', '2025-02-01') AS at_reset,
       pg_temp.score('1', '2025-02-11') AS quiet;
SELECT from_stage, to_stage, score FROM leadscore.stage_changes WHERE model = 'saas' AND lead = '1' ORDER BY id;
SELECT rule, kind, hits, points, raw, weighted FROM leadscore.explain('saas', '1', '2025-02-05');
SELECT rule, kind, hits, points, raw, weighted FROM leadscore.explain('saas', '1', '2025-01-31');
SELECT last_activity FROM leadscore.scores WHERE model = 'saas' AND lead = '1';

-- Later events score afresh: a visit, then a demo (once per lead: its first match since the reset).
INSERT INTO crm.activity (lead, type, at) VALUES (1, 'visit', '2025-02-10'), (1, 'demo', '2025-02-11');
SELECT pg_temp.score('1', '2025-02-12') AS after_events;
-- A late event dated before the reset is activity only.
INSERT INTO crm.activity (lead, type, at) VALUES (1, 'visit', '2025-01-20');
SELECT pg_temp.score('1', '2025-02-12') AS with_late_event, pg_temp.score('1', '2025-01-25') AS before_reset;
SELECT rule, hits FROM leadscore.explain('saas', '1', '2025-02-12') WHERE kind = 'engagement' ORDER BY rule;

-- A second reset: the latest one at or before a time applies then.
INSERT INTO leadscore.engagement_reset_int4 (model_id, lead, reset_at, reason)
SELECT id, 1, '2025-02-10 12:00', 'second try' FROM leadscore.model WHERE name = 'saas';
SELECT pg_temp.score('1', '2025-02-05') AS first_reset_applies, pg_temp.score('1', '2025-02-10 13:00') AS second,
       pg_temp.score('1', '2025-03-01') AS later;
SELECT rule, kind, hits, weighted FROM leadscore.explain('saas', '1', '2025-02-12');
-- Undo: deleting the resets brings every event back.
DELETE FROM leadscore.engagement_reset_int4 WHERE reason = 'second try';
SELECT pg_temp.score('1', '2025-02-12') AS one_reset;
DELETE FROM leadscore.engagement_reset_int4 WHERE lead = 1;
SELECT pg_temp.score('1', '2025-02-12') AS no_reset;
SELECT from_stage, to_stage, score FROM leadscore.stage_changes WHERE model = 'saas' AND lead = '1' ORDER BY id;

-- A lead with nothing scored yet (no lead row, no event) may be reset: events dated before it never count
-- (a NOTICE says the model has no such lead yet, 1.6).
SELECT leadscore.reset('saas', '7', '2025-03-01');
SELECT count(*) AS states FROM leadscore.scores WHERE model = 'saas' AND lead = '7';
INSERT INTO crm.activity (lead, type, at) VALUES (7, 'visit', '2025-02-15');
SELECT pg_temp.score('7', '2025-03-02') AS old_visit;
INSERT INTO crm.activity (lead, type, at) VALUES (7, 'visit', '2025-03-05');
SELECT pg_temp.score('7', '2025-03-06') AS new_visit;
-- A reset at now (the default) of lead 2.
SELECT leadscore.reset('saas', '2');
SELECT pg_temp.score('2', now()) AS lead_2_now, pg_temp.score('2', '2025-01-07') AS lead_2_before;

-- Live scores equal a recompute from scratch, now and in the past; the resets survive it.
CREATE TEMP TABLE live AS
SELECT t, s.* FROM unnest(ARRAY[timestamptz '2025-01-31', '2025-02-10 13:00', '2025-03-02', '2025-06-01']) t,
       LATERAL leadscore.scores_at('saas', t) s;
SELECT leadscore.recompute('saas');
SELECT count(*) AS differences
  FROM live l FULL JOIN (SELECT t, s.* FROM unnest(ARRAY[timestamptz '2025-01-31', '2025-02-10 13:00', '2025-03-02',
                                                         '2025-06-01']) t, LATERAL leadscore.scores_at('saas', t) s) r
       USING (t, lead)
 WHERE l.score IS DISTINCT FROM r.score;
SELECT model, lead, CASE WHEN reset_at = recorded_at THEN 'when recorded' ELSE reset_at::text END AS reset_at
  FROM leadscore.engagement_resets ORDER BY lead;

-- Refused: NULL arguments, an unknown model, a model without lead table, a key of the wrong type, a reset in
-- the future (by the function or a plain insert), a reset in the table of another key type.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT leadscore.reset(NULL, '1');
SELECT leadscore.reset('saas', NULL);
SELECT leadscore.reset('saas', '1', NULL);
SELECT leadscore.reset('nope', '1');
INSERT INTO leadscore.model (name) VALUES ('empty');
SELECT leadscore.reset('empty', '1');
SELECT leadscore.reset('saas', 'abc');
SELECT leadscore.reset('saas', '99999999999');
\set VERBOSITY terse
SELECT leadscore.reset('saas', '1', now() + interval '1 day');
INSERT INTO leadscore.engagement_reset_int4 (model_id, lead, reset_at)
SELECT id, 1, now() + interval '1 hour' FROM leadscore.model WHERE name = 'saas';
INSERT INTO leadscore.engagement_reset_int8 (model_id, lead, reset_at)
SELECT id, 1, '2025-01-01' FROM leadscore.model WHERE name = 'saas';
INSERT INTO leadscore.engagement_reset_int4 (model_id, lead, reset_at)
SELECT id, 1, 'infinity' FROM leadscore.model WHERE name = 'saas';
SELECT count(*) AS resets FROM leadscore.engagement_resets;
-- Truncating a history table rescores the models it concerns.
TRUNCATE leadscore.engagement_reset_int4;
SELECT pg_temp.score('7', '2025-03-02') AS old_visit_counts, pg_temp.score('2', now()) AS lead_2_now;

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
