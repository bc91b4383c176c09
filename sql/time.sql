-- Time: engagement decay with and without a grace period, inactivity steps, in scores and explain;
-- bad time settings refused when written.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.touch (lead int, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life) VALUES ('decay', '30 days');
INSERT INTO leadscore.model (name, half_life, grace) VALUES ('grace', '30 days', '14 days');
INSERT INTO leadscore.model (name) VALUES ('steps');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.touch', 'lead', 'at')
  FROM unnest(ARRAY['decay', 'grace', 'steps']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, 'touch', 'crm.touch', 'true', 10 FROM unnest(ARRAY['decay', 'grace', 'steps']) m;
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES
	('steps', 'quiet for 30 days', '30 days', -10),
	('steps', 'gone for 90 days', '90 days', -25);
INSERT INTO crm.lead VALUES (1), (2);
-- Lead 1: two touches on 1 January, then nothing. Lead 2: never touched.
INSERT INTO crm.touch VALUES (1, '2026-01-01'), (1, '2026-01-01');

-- A lead's score over time (the README's table): halves every 30 days; with a 14-day grace, full value
-- for 14 days then halves every 30; without decay, the inactivity steps (exclusive: -25, not -35).
SELECT d AS days,
       (SELECT round(score::numeric, 2) FROM leadscore.scores_at('decay', t) WHERE lead = '1') AS decay,
       (SELECT round(score::numeric, 2) FROM leadscore.scores_at('grace', t) WHERE lead = '1') AS grace,
       (SELECT round(score::numeric, 2) FROM leadscore.scores_at('steps', t) WHERE lead = '1') AS steps
  FROM unnest(ARRAY[0, 14, 30, 44, 60, 90, 120]) d, LATERAL (SELECT timestamptz '2026-01-01' + d * interval '1 day' AS t) x
 ORDER BY d;
-- A lead without any event gets no inactivity points.
SELECT lead, score FROM leadscore.scores_at('steps', '2026-06-01') ORDER BY lead;
-- Explain names the step that applies; the lines sum to the score.
SELECT rule, kind, hits, points, weighted FROM leadscore.explain('steps', '1', '2026-05-01') ORDER BY kind, rule;
SELECT sum(weighted) FROM leadscore.explain('steps', '1', '2026-05-01');
-- A new touch resets the inactivity and the grace period.
INSERT INTO crm.touch VALUES (1, '2026-04-01');
SELECT (SELECT round(score::numeric, 2) FROM leadscore.scores_at('grace', '2026-04-10') WHERE lead = '1') AS grace,
       (SELECT round(score::numeric, 2) FROM leadscore.scores_at('steps', '2026-04-10') WHERE lead = '1') AS steps;
-- Changing the grace period rescores the model.
UPDATE leadscore.model SET grace = '60 days' WHERE name = 'grace';
SELECT round(score::numeric, 2) AS grace FROM leadscore.scores_at('grace', '2026-05-01') WHERE lead = '1';

-- Refused: a grace period without half-life, a zero or negative one; a zero, negative or duplicate
-- inactivity interval, non-finite points, a step named like a rule.
INSERT INTO leadscore.model (name, grace) VALUES ('no half-life', '7 days');
UPDATE leadscore.model SET grace = '0 days' WHERE name = 'grace';
UPDATE leadscore.model SET grace = '-1 day' WHERE name = 'grace';
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('steps', 'now', '0 days', -5);
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('steps', 'past', '-3 days', -5);
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('steps', 'also 30 days', '30 days', -5);
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('steps', 'huge', '10 days', 'Infinity');
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('steps', 'touch', '10 days', -1);
SELECT model, name, after, points FROM leadscore.inactivity_rule ORDER BY model, after;

-- Stage changes caused by time alone: leadscore.advance_stages records each at the instant it happens.
-- Touches dated in 2100 are arrivals scheduled ahead; a 10-day half-life then moves the lead down.
INSERT INTO leadscore.model (name, half_life) VALUES ('timed', '10 days');
SELECT leadscore.track_leads('timed', 'crm.lead', 'id'), leadscore.track_events('timed', 'crm.touch', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('timed', 'touch', 'crm.touch', 'true', 30);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('timed', 'warm', 10), ('timed', 'hot', 25);
INSERT INTO crm.lead VALUES (3);
INSERT INTO crm.touch VALUES (3, '2100-01-01'), (3, '2100-01-11');
SELECT leadscore.advance_stages('2100-01-05') AS recorded;
SELECT leadscore.advance_stages('2100-03-01') AS recorded;
SELECT leadscore.advance_stages('2100-03-01') AS recorded_again;
-- 30 points arrive (hot), fall below 25 after 10 x log2(30/25) days; 45 after the second touch (hot), below
-- 25 after 10 x log2(45/25) days, below 10 after 10 x log2(45/10) days: to the microsecond.
SELECT lead, from_stage, to_stage, round(score::numeric, 3) AS score, changed_at
  FROM leadscore.stage_changes WHERE model = 'timed' AND changed_at >= '2100-01-01' ORDER BY changed_at;
SELECT lead, stage, next_change FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
 WHERE m.name = 'timed' AND lead = 3;

-- A statement on a lead first records the changes time caused since it was last looked at.
INSERT INTO leadscore.model (name, half_life) VALUES ('fast', '2 seconds');
SELECT leadscore.track_leads('fast', 'crm.lead', 'id'), leadscore.track_events('fast', 'crm.touch', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('fast', 'touch', 'crm.touch', 'true', 20);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('fast', 'hot', 15);
INSERT INTO crm.lead VALUES (4);
INSERT INTO crm.touch VALUES (4, now());
SELECT pg_sleep(1.5);
INSERT INTO crm.touch VALUES (4, now());
-- hot at the first touch, cold 2 x log2(20/15) = 0.830075 s later, hot again at the second touch.
SELECT from_stage, to_stage, CASE WHEN after < interval '1 second' THEN after::text ELSE 'after the sleep' END AS after
  FROM (SELECT from_stage, to_stage, changed_at, changed_at - first_value(changed_at) OVER (ORDER BY changed_at) AS after
          FROM leadscore.stage_changes WHERE model = 'fast') c
 ORDER BY changed_at;

-- A tracked table dropped with the rules that read it, while its model's leads are due for a change by
-- time (as if the scheduled run were late): the DROP goes through, the model is rescored without them.
CREATE TABLE crm.ping (lead int, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life) VALUES ('dropped', '1 day');
SELECT leadscore.track_leads('dropped', 'crm.lead', 'id'), leadscore.track_events('dropped', 'crm.ping', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('dropped', 'ping', 'crm.ping', 'true', 30);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('dropped', 'cold', '-Infinity'), ('dropped', 'hot', 20);
INSERT INTO crm.ping VALUES (1, now() - interval '12 hours'), (2, now());
UPDATE leadscore.state_int4 s SET next_change = now() - interval '1 second'
  FROM leadscore.model m WHERE m.id = s.model_id AND m.name = 'dropped';
DROP TABLE crm.ping;
SELECT lead, score, stage FROM leadscore.scores WHERE model = 'dropped' ORDER BY lead;
SELECT lead, from_stage, to_stage FROM leadscore.stage_changes WHERE model = 'dropped' ORDER BY id;

-- A lead that leaves (its lead row deleted, no event left) records its change to no stage, and back; a
-- recompute then records nothing again.
INSERT INTO leadscore.model (name) VALUES ('leaving');
SELECT leadscore.track_leads('leaving', 'crm.lead', 'id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('leaving', 'any', 'crm.lead', 'true', 1);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('leaving', 'cold', 0);
INSERT INTO crm.lead VALUES (9);
DELETE FROM crm.lead WHERE id = 9;
INSERT INTO crm.lead VALUES (9);
DELETE FROM crm.lead WHERE id = 9;
SELECT leadscore.recompute('leaving') > 0 AS recomputed;
SELECT lead, from_stage, to_stage, score FROM leadscore.stage_changes WHERE model = 'leaving' AND lead = '9' ORDER BY id;

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
