-- Stage hysteresis (leadscore.model.stage_exit_margin): a lead leaves its stage for a lower one only once
-- its score is more than the margin below the stage's min_score, then takes the stage its score + margin
-- reaches; 'Infinity': stages never go down. With decay and the scheduled run (advance_stages records each
-- exit at its instant), in scores_at before and after the run, explain, stage_leads, row changes, a
-- recompute, a change of the margin; bad margins refused.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.touch (lead int, kind text, at timestamptz NOT NULL);
-- The Quick start's stages (warm at 30, MQL at 50), a demo worth 50 points, a half-life of 30 days: alike
-- but for the margin.
INSERT INTO leadscore.model (name, half_life, stage_exit_margin) VALUES
	('flat', '30 days', 0), ('margin', '30 days', 10), ('never', '30 days', 'Infinity');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.touch', 'lead', 'at')
  FROM unnest(ARRAY['flat', 'margin', 'never']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, 'demo', 'crm.touch', $$kind = 'demo'$$, 50 FROM unnest(ARRAY['flat', 'margin', 'never']) m;
INSERT INTO leadscore.stage (model, name, min_score)
SELECT m, s, v FROM unnest(ARRAY['flat', 'margin', 'never']) m,
       (VALUES ('cold', '-Infinity'::float8), ('warm', 30), ('MQL', 50)) b (s, v);
INSERT INTO crm.lead VALUES (1);
-- A demo that arrives on 1 January 2100 (dated ahead): the lead reaches exactly 50 then.
INSERT INTO crm.touch VALUES (1, 'demo', '2100-01-01 00:00+00');

-- Its stage at instants after the arrival, before any scheduled run: without a margin it leaves MQL a
-- microsecond after reaching it (the flap); with 10 it stays until its score is below 40 (9.66 days),
-- then warm until below 20; with Infinity it never goes down.
CREATE TEMP TABLE before_run AS
SELECT m AS model, d AS days, s.stage, round(s.score::numeric, 2) AS score
  FROM unnest(ARRAY['flat', 'margin', 'never']) m, unnest(ARRAY[0, 0.000001, 5, 9.6, 9.7, 30, 39.6, 39.7, 60]::float8[]) d,
       LATERAL leadscore.scores_at(m, timestamptz '2100-01-01 00:00+00' + d * interval '1 day') s
 WHERE s.lead = '1';
SELECT model, days, stage, score FROM before_run ORDER BY model, days;

-- The scheduled run records each change at its instant (to the minute here), once.
SELECT leadscore.advance_stages('2100-03-01 00:00+00');
SELECT leadscore.advance_stages('2100-03-01 00:00+00');
SELECT model, from_stage, to_stage, date_trunc('minute', changed_at) AT TIME ZONE 'UTC' AS changed_at
  FROM leadscore.stage_changes WHERE lead = '1' AND changed_at > '2099-12-31'
 ORDER BY model, changed_at, id;
-- Each change: the stage before it, and at it, read back (from the history, now that the run is past them).
SELECT c.model, c.to_stage,
       (SELECT stage FROM leadscore.scores_at(c.model, c.changed_at - interval '1 microsecond') WHERE lead = '1')
         IS NOT DISTINCT FROM c.from_stage AS before_ok,
       (SELECT stage FROM leadscore.scores_at(c.model, c.changed_at) WHERE lead = '1') IS NOT DISTINCT FROM c.to_stage
         AS at_ok
  FROM leadscore.stage_changes c WHERE c.lead = '1' AND c.changed_at > '2099-12-31' ORDER BY c.model, c.changed_at, c.id;
-- The same stages as before the run, now read from the history: no difference.
SELECT b.model, b.days, b.stage AS before, s.stage AS after
  FROM before_run b, LATERAL leadscore.scores_at(b.model, timestamptz '2100-01-01 00:00+00' + b.days * interval '1 day') s
 WHERE s.lead = '1' AND s.stage IS DISTINCT FROM b.stage;

-- explain says the stage is held (a line of kind stage, no points); stage_leads finds a held lead.
SELECT rule, kind, hits, points, round(weighted::numeric, 2) AS weighted
  FROM leadscore.explain('margin', '1', '2100-01-06 00:00+00') ORDER BY kind, rule;
SELECT m, (SELECT count(*) FROM leadscore.stage_leads(m, 'MQL', '2100-01-06 00:00+00')) AS mql,
       (SELECT count(*) FROM leadscore.stage_leads(m, 'warm', '2100-01-06 00:00+00')) AS warm
  FROM unnest(ARRAY['flat', 'margin', 'never']) m ORDER BY m;

-- Row changes: without decay, in one transaction (one instant). A demo (50: MQL), then unsubscribes of -5
-- each: 45 and 40 keep MQL under a margin of 10, 35 goes to warm (35 + 10 reaches 30); never stays MQL.
CREATE TABLE crm.contact (id int PRIMARY KEY);
CREATE TABLE crm.act (contact int, kind text);
INSERT INTO leadscore.model (name, stage_exit_margin) VALUES ('w_flat', 0), ('w_margin', 10), ('w_never', 'Infinity');
SELECT leadscore.track_leads(m, 'crm.contact', 'id'), leadscore.track_events(m, 'crm.act', 'contact')
  FROM unnest(ARRAY['w_flat', 'w_margin', 'w_never']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, r, 'crm.act', format('kind = %L', r), p FROM unnest(ARRAY['w_flat', 'w_margin', 'w_never']) m,
       (VALUES ('demo', 50), ('unsub', -5)) x (r, p);
INSERT INTO leadscore.stage (model, name, min_score)
SELECT m, s, v FROM unnest(ARRAY['w_flat', 'w_margin', 'w_never']) m,
       (VALUES ('cold', '-Infinity'::float8), ('warm', 30), ('MQL', 50)) b (s, v);
INSERT INTO crm.contact VALUES (2);
BEGIN;
INSERT INTO crm.act VALUES (2, 'demo');
CREATE TEMP TABLE steps (step int, model text, score float8, stage text);
INSERT INTO steps SELECT 0, model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2';
INSERT INTO crm.act VALUES (2, 'unsub');
INSERT INTO steps SELECT 1, model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2';
INSERT INTO crm.act VALUES (2, 'unsub');
INSERT INTO steps SELECT 2, model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2';
INSERT INTO crm.act VALUES (2, 'unsub');
INSERT INTO steps SELECT 3, model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2';
COMMIT;
SELECT model, step, score, stage FROM steps ORDER BY model, step;
SELECT model, from_stage, to_stage FROM leadscore.stage_changes WHERE lead = '2' ORDER BY model, id;
-- Back up: a demo more (85) takes each to MQL at once (up is never held).
INSERT INTO crm.act VALUES (2, 'demo');
SELECT model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2' ORDER BY model;
DELETE FROM crm.act WHERE kind = 'demo' AND ctid = (SELECT min(ctid) FROM crm.act WHERE kind = 'demo');
-- 35 again: from MQL, warm under the margin; never: MQL. A recompute keeps each stage (it is history).
SELECT model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2' ORDER BY model;
SELECT leadscore.recompute(m) FROM unnest(ARRAY['w_flat', 'w_margin', 'w_never']) m;
SELECT model, score, stage FROM leadscore.scores WHERE model LIKE 'w\_%' AND lead = '2' ORDER BY model;
-- A smaller margin applies at once: never -> 0 moves the lead to its score's stage, recorded.
UPDATE leadscore.model SET stage_exit_margin = 0 WHERE name = 'w_never';
SELECT model, score, stage FROM leadscore.scores WHERE model = 'w_never' AND lead = '2';
SELECT from_stage, to_stage FROM leadscore.stage_changes WHERE model = 'w_never' AND lead = '2' ORDER BY id DESC LIMIT 1;

-- Refused: a negative margin, NaN, NULL.
UPDATE leadscore.model SET stage_exit_margin = -1 WHERE name = 'w_flat';
UPDATE leadscore.model SET stage_exit_margin = 'NaN' WHERE name = 'w_flat';
UPDATE leadscore.model SET stage_exit_margin = NULL WHERE name = 'w_flat';
SELECT name, stage_exit_margin FROM leadscore.model ORDER BY name;

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
