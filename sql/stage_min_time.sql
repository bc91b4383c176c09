-- A minimum time in stage (leadscore.model.stage_min_time): a lead goes to a lower stage no earlier than
-- the minimum after it entered its stage, then to the stage its score gives at that instant; up is never
-- held; with a margin, both must let it go. With decay and the scheduled run (advance_stages records each
-- exit at its instant), in scores_at before and after the run, explain, stage_leads, row changes, a
-- recompute; bad values refused.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.touch (lead int, kind text, at timestamptz NOT NULL);
-- The Quick start's stages (warm at 30, MQL at 50), a demo worth 50 points, a half-life of 30 days: no
-- minimum (flat), 14 days (held14), 5 days with a margin of 10 (both: the margin lets go later).
INSERT INTO leadscore.model (name, half_life, stage_exit_margin, stage_min_time) VALUES
	('flat', '30 days', 0, NULL), ('held14', '30 days', 0, '14 days'), ('both', '30 days', 10, '5 days');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.touch', 'lead', 'at')
  FROM unnest(ARRAY['flat', 'held14', 'both']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, 'demo', 'crm.touch', $$kind = 'demo'$$, 50 FROM unnest(ARRAY['flat', 'held14', 'both']) m;
INSERT INTO leadscore.stage (model, name, min_score)
SELECT m, s, v FROM unnest(ARRAY['flat', 'held14', 'both']) m,
       (VALUES ('cold', '-Infinity'::float8), ('warm', 30), ('MQL', 50)) b (s, v);
INSERT INTO crm.lead VALUES (1);
-- A demo that arrives on 1 January 2100 (dated ahead): the lead reaches exactly 50, and MQL, then.
INSERT INTO crm.touch VALUES (1, 'demo', '2100-01-01 00:00+00');

-- Before any scheduled run: without a minimum the lead leaves MQL a microsecond after reaching it; held14
-- stays MQL for 14 days, goes to warm then (its score 36.1), stays warm until day 28 although its score is
-- below 30 from day 22.1, then cold; both leaves MQL below 40 (day 9.66: the 5 days are over), warm below 20.
CREATE TEMP TABLE before_run AS
SELECT m AS model, d AS days, s.stage, round(s.score::numeric, 2) AS score
  FROM unnest(ARRAY['flat', 'held14', 'both']) m,
       unnest(ARRAY[0, 0.000001, 5, 9.7, 13.99, 14, 22.2, 27.99, 28, 40, 60]::float8[]) d,
       LATERAL leadscore.scores_at(m, timestamptz '2100-01-01 00:00+00' + d * interval '1 day') s
 WHERE s.lead = '1';
SELECT model, days, stage, score FROM before_run ORDER BY model, days;

-- The scheduled run records each change at its instant (held14's at the end of each minimum, to the
-- microsecond), once.
SELECT leadscore.advance_stages('2100-03-01 00:00+00');
SELECT leadscore.advance_stages('2100-03-01 00:00+00');
SELECT model, from_stage, to_stage,
       CASE WHEN model = 'held14' THEN changed_at AT TIME ZONE 'UTC'
            ELSE date_trunc('minute', changed_at) AT TIME ZONE 'UTC' END AS changed_at
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
-- The state row knows when the lead entered its stage: cold at day 28.
SELECT m.name, s.stage, s.stage_since AT TIME ZONE 'UTC' AS stage_since
  FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
 WHERE s.lead = 1 AND m.name = 'held14';

-- explain says the stage is held (a line of kind stage, no points); stage_leads finds the held lead.
SELECT rule, kind, hits, points, round(weighted::numeric, 2) AS weighted
  FROM leadscore.explain('held14', '1', '2100-01-10 00:00+00') ORDER BY kind, rule;
SELECT m, (SELECT count(*) FROM leadscore.stage_leads(m, 'MQL', '2100-01-10 00:00+00')) AS mql,
       (SELECT count(*) FROM leadscore.stage_leads(m, 'warm', '2100-01-10 00:00+00')) AS warm
  FROM unnest(ARRAY['flat', 'held14', 'both']) m ORDER BY m;

-- Row changes, without decay: a demo (50: MQL), then an unsubscribe of -20 in the same transaction: held
-- MQL for an hour from the instant the lead entered it, warm then (read ahead of time, and as the run
-- records it: at that instant exactly).
CREATE TABLE crm.contact (id int PRIMARY KEY);
CREATE TABLE crm.act (contact int, kind text);
INSERT INTO leadscore.model (name, stage_min_time) VALUES ('w_min', '1 hour');
SELECT leadscore.track_leads('w_min', 'crm.contact', 'id'), leadscore.track_events('w_min', 'crm.act', 'contact');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('w_min', 'demo', 'crm.act', $$kind = 'demo'$$, 50), ('w_min', 'unsub', 'crm.act', $$kind = 'unsub'$$, -20);
INSERT INTO leadscore.stage (model, name, min_score) VALUES
	('w_min', 'cold', '-Infinity'), ('w_min', 'warm', 20), ('w_min', 'MQL', 50);
INSERT INTO crm.contact VALUES (2);
BEGIN;
INSERT INTO crm.act VALUES (2, 'demo');
INSERT INTO crm.act VALUES (2, 'unsub');
SELECT score, stage FROM leadscore.scores WHERE model = 'w_min' AND lead = '2';
COMMIT;
CREATE TEMP TABLE entered AS
SELECT changed_at FROM leadscore.stage_changes WHERE model = 'w_min' AND lead = '2' AND to_stage = 'MQL';
SELECT (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '59 minutes') WHERE lead = '2') AS at_59,
       (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '1 hour') WHERE lead = '2') AS at_60
  FROM entered e;
-- Up is never held: a demo more (80) is MQL at once; deleted again, the lead is back at 30, held MQL.
INSERT INTO crm.act VALUES (2, 'demo');
SELECT score, stage FROM leadscore.scores WHERE model = 'w_min' AND lead = '2';
DELETE FROM crm.act WHERE kind = 'demo' AND ctid = (SELECT max(ctid) FROM crm.act WHERE kind = 'demo');
SELECT score, stage FROM leadscore.scores WHERE model = 'w_min' AND lead = '2';
-- A recompute keeps the stage and the instant it was entered: the hour still ends at the same instant.
SELECT leadscore.recompute('w_min');
SELECT (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '59 minutes') WHERE lead = '2') AS at_59,
       (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '1 hour') WHERE lead = '2') AS at_60
  FROM entered e;
-- A longer minimum applies from the instant the lead entered its stage (the state row's stage_since):
-- held until two hours after it.
UPDATE leadscore.model SET stage_min_time = '2 hours' WHERE name = 'w_min';
SELECT (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '119 minutes') WHERE lead = '2') AS at_119,
       (SELECT stage FROM leadscore.scores_at('w_min', e.changed_at + interval '2 hours') WHERE lead = '2') AS at_120
  FROM entered e;
-- The run, two and a half hours on: MQL -> warm recorded at the end of the two hours exactly.
SELECT leadscore.advance_stages(now() + interval '150 minutes');
SELECT c.from_stage, c.to_stage, c.changed_at = e.changed_at + interval '2 hours' AS at_end_of_minimum
  FROM leadscore.stage_changes c, entered e
 WHERE c.model = 'w_min' AND c.lead = '2' AND c.changed_at > e.changed_at ORDER BY c.id;

-- A stage's own minimum and margin, in place of the model's: MQL held 14 days, warm by the model's (none:
-- it follows the score, cold below 30 at day 22.1); a stage never left ('Infinity').
INSERT INTO leadscore.model (name, half_life) VALUES ('per', '30 days'), ('per_never', '30 days');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.touch', 'lead', 'at')
  FROM unnest(ARRAY['per', 'per_never']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, 'demo', 'crm.touch', $$kind = 'demo'$$, 50 FROM unnest(ARRAY['per', 'per_never']) m;
INSERT INTO leadscore.stage (model, name, min_score, exit_margin, min_time) VALUES
	('per', 'cold', '-Infinity', NULL, NULL), ('per', 'warm', 30, NULL, NULL), ('per', 'MQL', 50, NULL, '14 days'),
	('per_never', 'cold', '-Infinity', NULL, NULL), ('per_never', 'warm', 30, NULL, NULL),
	('per_never', 'MQL', 50, 'Infinity', NULL);
SELECT m AS model, d AS days, s.stage, round(s.score::numeric, 2) AS score
  FROM unnest(ARRAY['per', 'per_never']) m, unnest(ARRAY[0, 13.99, 14, 22.1, 22.2, 60]::float8[]) d,
       LATERAL leadscore.scores_at(m, timestamptz '2100-01-01 00:00+00' + d * interval '1 day') s
 WHERE s.lead = '1' ORDER BY model, days;
SELECT (SELECT count(*) FROM leadscore.stage_leads('per', 'MQL', '2100-01-10 00:00+00')) AS mql;
SELECT leadscore.advance_stages('2100-03-01 00:00+00');
SELECT model, from_stage, to_stage,
       CASE WHEN to_stage = 'warm' THEN changed_at AT TIME ZONE 'UTC' ELSE date_trunc('minute', changed_at) AT TIME ZONE 'UTC' END AS changed_at
  FROM leadscore.stage_changes WHERE lead = '1' AND model LIKE 'per%' AND changed_at > '2099-12-31'
 ORDER BY model, changed_at, id;
-- Refused: a negative or NaN margin, a minimum of zero or of months.
UPDATE leadscore.stage SET exit_margin = -1 WHERE model = 'per' AND name = 'warm';
UPDATE leadscore.stage SET exit_margin = 'NaN' WHERE model = 'per' AND name = 'warm';
UPDATE leadscore.stage SET min_time = '0' WHERE model = 'per' AND name = 'warm';
UPDATE leadscore.stage SET min_time = '2 months' WHERE model = 'per' AND name = 'warm';

-- Refused: zero, negative, months or years (not a fixed length).
UPDATE leadscore.model SET stage_min_time = '0' WHERE name = 'w_min';
UPDATE leadscore.model SET stage_min_time = '-1 day' WHERE name = 'w_min';
UPDATE leadscore.model SET stage_min_time = '1 month' WHERE name = 'w_min';
UPDATE leadscore.model SET stage_min_time = '1 year 2 days' WHERE name = 'w_min';
SELECT name, stage_exit_margin, stage_min_time FROM leadscore.model ORDER BY name;
-- Every interval the library counts in microseconds is kept under 100000 years, with a clear error (a
-- longer one made each load of the configuration fail with "bigint out of range"); just under it, a model
-- still scores. (Terse: a rule's row shows its author, the name of whoever runs the test.)
\set VERBOSITY terse
UPDATE leadscore.model SET stage_min_time = '40000000 days' WHERE name = 'w_min';
UPDATE leadscore.stage SET min_time = '40000000 days' WHERE model = 'per' AND name = 'warm';
UPDATE leadscore.model SET grace = '40000000 days' WHERE name = 'flat';
UPDATE leadscore.rule SET max_per_period = 1, period = '40000000 days' WHERE model = 'flat' AND name = 'demo';
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('w_min', 'asleep', '40000000 days', -1);
\set VERBOSITY default
UPDATE leadscore.model SET stage_min_time = '35999999 days' WHERE name = 'w_min';
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('flat', 'asleep', '35999999 days', -1);
INSERT INTO crm.act VALUES (2, 'unsub');
SELECT score, stage FROM leadscore.scores WHERE model = 'w_min' AND lead = '2';

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
