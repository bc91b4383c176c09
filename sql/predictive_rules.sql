-- A prediction inside a scoring model: a lead rule with a predictor gives points x the probability the
-- trained model predicts for the lead row, live as leads change, recomputed when the model is retrained.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
-- History: converted leads (a planted model: log-odds = -1 + 2 x (plan = 'pro') + 0.02 x (employees - 50)).
SELECT setseed(0.25);
CREATE TABLE crm.past_lead AS
SELECT g AS id, plan, employees,
       random() < 1 / (1 + exp(-(-1 + CASE WHEN plan = 'pro' THEN 2 ELSE 0 END + 0.02 * (employees - 50)))) AS converted
  FROM (SELECT g, (ARRAY['free', 'pro'])[1 + g % 2] AS plan, (g * 37) % 100 AS employees
          FROM generate_series(1, 4000) g) s;
SELECT version, converged FROM leadscore.train('conversion', 'SELECT plan, employees, converted FROM crm.past_lead');

-- The CRM's leads, scored by a model with one predictive rule and one plain rule.
CREATE TABLE crm.lead (id int PRIMARY KEY, plan text, employees int, country text);
CREATE TABLE crm.visit (lead int, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name) VALUES ('fit');
SELECT leadscore.track_leads('fit', 'crm.lead', 'id');
SELECT leadscore.track_events('fit', 'crm.visit', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points, predictor) VALUES
	('fit', 'likely to convert', 'crm.lead', 'true', 100, 'conversion');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('fit', 'visit', 'crm.visit', 'true', 1);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('fit', 'MQL', 50);
INSERT INTO crm.lead VALUES (1, 'pro', 90, 'FR'), (2, 'free', 10, 'US'), (3, 'pro', NULL, 'DE');
INSERT INTO crm.visit VALUES (1, '2026-01-01'), (2, '2026-01-01');

-- The score is 100 x the prediction (plus the visit), exactly.
SELECT s.lead, round(s.fit::numeric, 6) = round((100 * leadscore.predict('conversion', l))::numeric, 6) AS is_100p,
       round(s.score::numeric, 2) AS score, s.stage
  FROM leadscore.scores_int4 s JOIN crm.lead l ON l.id = s.lead ORDER BY s.lead;
SELECT rule, kind, hits, points, round(raw::numeric, 2) AS raw, round(weighted::numeric, 2) AS weighted
  FROM leadscore.explain('fit', '2') ORDER BY rule;

-- A lead row change changes the prediction, live.
UPDATE crm.lead SET plan = 'pro', employees = 80 WHERE id = 2;
SELECT lead, round(score::numeric, 2) AS score, stage FROM leadscore.scores_int4 WHERE lead = 2;
SELECT lead, from_stage, to_stage FROM leadscore.stage_changes ORDER BY changed_at, lead;

-- Retraining (the live model now sees only the free plan leads) recomputes the scores at commit.
BEGIN;
SELECT version FROM leadscore.train('conversion', 'SELECT plan, employees, converted FROM crm.past_lead WHERE employees < 50');
COMMIT;
SELECT count(*) AS differ
  FROM leadscore.scores_int4 s JOIN crm.lead l ON l.id = s.lead
 WHERE abs(s.fit - 100 * leadscore.predict('conversion', l)) > 1e-9;
-- And the live scores equal a recompute.
CREATE TEMP TABLE live AS SELECT lead, score FROM leadscore.scores_int4;
SELECT leadscore.recompute('fit');
SELECT count(*) AS differ FROM live l JOIN leadscore.scores_int4 r USING (lead) WHERE l.score <> r.score;

-- Refused when written: a predictor on an event rule, an unknown model, a model reading a missing column.
INSERT INTO leadscore.rule (model, name, source, condition, points, predictor) VALUES
	('fit', 'visit p', 'crm.visit', 'true', 10, 'conversion');
INSERT INTO leadscore.rule (model, name, source, condition, points, predictor) VALUES
	('fit', 'nope', 'crm.lead', 'true', 10, 'no such model');
SELECT version FROM leadscore.train('churn', 'SELECT plan, employees AS staff, converted FROM crm.past_lead');
INSERT INTO leadscore.rule (model, name, source, condition, points, predictor) VALUES
	('fit', 'churn', 'crm.lead', 'true', -10, 'churn');
-- A trained model in use cannot be deleted.
DELETE FROM leadscore.predictive_model WHERE name = 'conversion';
SELECT count(*) AS versions FROM leadscore.predictive_model WHERE name = 'conversion';

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
