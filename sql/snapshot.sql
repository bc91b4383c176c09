-- Score history: daily snapshots of every lead's score and stage, for BI.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY, plan text);
CREATE TABLE crm.touch (lead int, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life) VALUES ('web', '10 days');
SELECT leadscore.track_leads('web', 'crm.lead', 'id'), leadscore.track_events('web', 'crm.touch', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('web', 'pro', 'crm.lead', $$plan = 'pro'$$, 10),
	('web', 'touch', 'crm.touch', 'true', 40);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('web', 'MQL', 30);
INSERT INTO crm.lead VALUES (1, 'pro'), (2, 'free');
INSERT INTO crm.touch VALUES (1, '2026-03-01'), (2, '2026-03-05');

-- One snapshot per day of March's first three weeks, each at the end of its day (exact at any time).
SELECT sum(leadscore.snapshot('web', d::date)) AS rows
  FROM generate_series(date '2026-03-01', date '2026-03-21', interval '1 day') d;
-- A lead's score over time, and a stage's size per day: what a BI tool charts.
SELECT day, round(score::numeric, 2) AS score, stage FROM leadscore.score_snapshot
 WHERE model = 'web' AND lead = '1' AND day IN ('2026-03-01', '2026-03-07', '2026-03-14', '2026-03-21') ORDER BY day;
SELECT day, count(*) FILTER (WHERE stage = 'MQL') AS mql FROM leadscore.score_snapshot
 WHERE model = 'web' AND day BETWEEN '2026-03-04' AND '2026-03-09' GROUP BY day ORDER BY day;
-- Taking a day again replaces it; every model at once by default.
SELECT leadscore.snapshot(day => '2026-03-21') AS rows;
SELECT count(*), min(taken_at) = max(taken_at) AS one_instant FROM leadscore.score_snapshot WHERE day = '2026-03-21';
SELECT leadscore.snapshot('nope');
SELECT leadscore.snapshot('web', NULL);

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
