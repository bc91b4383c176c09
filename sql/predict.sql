-- Predictive scoring: train on a labelled query, read the model, predict, explain, retrain (versions),
-- measure any score (auc, lift, calibration, conversion per stage), calibrate a rules model from history.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;

-- History with a planted model: log-odds = -1 + 1.5 x1 - 0.8 x2 (x2 missing counts 0) + 1 (pro) - 1 (free)
-- + 0.5 (b2b). Deterministic: setseed.
SELECT setseed(0.5);
CREATE TABLE hist AS
SELECT g AS id, x1, x2, plan, b2b,
       random() < 1 / (1 + exp(-(-1 + 1.5 * x1 - 0.8 * coalesce(x2, 0)
                                 + CASE plan WHEN 'pro' THEN 1 WHEN 'free' THEN -1 ELSE 0 END
                                 + CASE WHEN b2b THEN 0.5 ELSE 0 END))) AS converted
  FROM (SELECT g, random() * 4 - 2 AS x1, CASE WHEN g % 10 = 0 THEN NULL ELSE random() * 3 END AS x2,
               (ARRAY['free', 'basic', 'pro'])[1 + (g % 3)] AS plan, g % 4 = 0 AS b2b
          FROM generate_series(1, 20000) g) s;
ALTER TABLE hist ADD PRIMARY KEY (id);

-- Train (lambda 0: maximum likelihood), on every column but the key.
SELECT version, rows, positives, converged, round(auc::numeric, 3) AS auc
  FROM leadscore.train('planted', 'SELECT x1, x2, plan, b2b, converted FROM hist', 'converted', lambda => 0);

-- The model as rows: the planted coefficients come back (x2 is imputed by its mean, 1.5, so its missing
-- indicator carries 0.8 x 1.5; basic is the reference level of plan).
SELECT name, term, level, round(coefficient::numeric, 1) AS coefficient, round(odds_ratio::numeric, 1) AS odds_ratio
  FROM leadscore.coefficients WHERE model = 'planted' ORDER BY ord;
SELECT name, version, label, features, feature_kinds, lambda, rows, iterations < 10 AS few_iterations, converged,
       query, options->>'max_levels' AS max_levels
  FROM leadscore.predictive_models;

-- Predict one row, a whole table; the log-odds; a row of another type with the same column names.
SELECT id, round(leadscore.predict('planted', h)::numeric, 4) AS p,
       round(leadscore.predict_log_odds('planted', h)::numeric, 4) AS log_odds
  FROM hist h ORDER BY id LIMIT 4;
SELECT round(leadscore.predict('planted', r)::numeric, 4) AS p
  FROM (SELECT 'pro'::text AS plan, NULL::float8 AS x2, 1 AS x1, true AS b2b, 'ignored' AS other) r;
SELECT round(leadscore.predict('planted', r)::numeric, 4) AS unseen_level_is_reference
  FROM (SELECT 'enterprise'::text AS plan, 1.0::numeric AS x2, 0 AS x1, false AS b2b) r;
SELECT count(*), round(avg(leadscore.predict('planted', h))::numeric, 3) AS mean_p,
       round(avg(converted::int)::numeric, 3) AS rate FROM hist h;

-- Explain: the baseline (the average lead) and each feature's contribution sum to the log-odds.
SELECT feature, level, value, round(contribution::numeric, 4) AS contribution
  FROM leadscore.explain_prediction('planted', (SELECT h FROM hist h WHERE id = 10));
SELECT round(sum(contribution)::numeric, 9) = round(leadscore.predict_log_odds('planted', h)::numeric, 9) AS sums_up
  FROM hist h, leadscore.explain_prediction('planted', h) WHERE h.id = 10 GROUP BY h.*;

-- Retraining keeps the previous version; predictions use the latest at once (same session).
SELECT version, converged FROM leadscore.train('planted', 'SELECT x1, plan, converted FROM hist WHERE id <= 10000');
SELECT name, version, features FROM leadscore.predictive_models;
SELECT model, version, count(*) FROM leadscore.predictive_term GROUP BY 1, 2 ORDER BY 1, 2;
SELECT round(leadscore.predict('planted', r)::numeric, 4) AS p FROM (SELECT 'pro'::text AS plan, 1 AS x1) r;
-- Deleting the latest version goes back to the previous one.
DELETE FROM leadscore.predictive_model WHERE name = 'planted' AND version = 2;
SELECT round(leadscore.predict('planted', r)::numeric, 4) AS p
  FROM (SELECT 'pro'::text AS plan, NULL::float8 AS x2, 1 AS x1, true AS b2b) r;

-- Naive Bayes over field values, as Odoo's predictive lead scoring (categorical columns only: cast or bin
-- the others); stored, predicted and explained like the logistic model.
SELECT version, rows, iterations, converged, round(auc::numeric, 3) AS auc
  FROM leadscore.train_bayes('odoo', $$SELECT plan, b2b::text AS b2b, CASE WHEN x1 > 0 THEN 'high' ELSE 'low' END AS engagement,
                                              converted FROM hist$$);
SELECT name, method, lambda, options->>'alpha' AS alpha, features, feature_kinds FROM leadscore.predictive_models ORDER BY name;
SELECT name, term, round(coefficient::numeric, 3) AS coefficient, count
  FROM leadscore.coefficients WHERE model = 'odoo' ORDER BY ord;
CREATE VIEW hist_fields AS
	SELECT id, plan, b2b::text AS b2b, CASE WHEN x1 > 0 THEN 'high' ELSE 'low' END AS engagement, converted FROM hist;
SELECT id, round(leadscore.predict('odoo', f)::numeric, 4) AS p FROM hist_fields f ORDER BY id LIMIT 3;
SELECT round(sum(contribution)::numeric, 9) = round(leadscore.predict_log_odds('odoo', f)::numeric, 9) AS sums_up
  FROM hist_fields f, leadscore.explain_prediction('odoo', f) WHERE f.id = 10 GROUP BY f.*;
SELECT round(leadscore.auc(leadscore.predict('odoo', f), converted)::numeric, 3) AS auc_bayes FROM hist_fields f;
DROP VIEW hist_fields;

-- Measure any score: AUC as an aggregate (also in parallel, also grouped), lift per decile, calibration.
SELECT round(leadscore.auc(leadscore.predict('planted', h), converted)::numeric, 4) AS auc FROM hist h;
SELECT round(leadscore.auc(x1, converted)::numeric, 4) AS auc_of_x1, leadscore.auc(1, converted) AS constant,
       leadscore.auc(x1, true) AS one_class FROM hist;
SELECT plan, round(leadscore.auc(x1, converted)::numeric, 4) AS auc FROM hist GROUP BY plan ORDER BY plan;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT round(leadscore.auc(x1, converted)::numeric, 4) AS parallel_auc_of_x1 FROM hist;
SELECT round(leadscore.auc(leadscore.predict('planted', h), converted)::numeric, 4) AS parallel_auc FROM hist h;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
SELECT bucket, leads, converted, round(conversion_rate::numeric, 3) AS rate, round(lift::numeric, 2) AS lift,
       round(cumulative_lift::numeric, 2) AS cumulative_lift, round(capture_rate::numeric, 3) AS capture
  FROM leadscore.lift('SELECT leadscore.predict(''planted'', h), converted FROM hist h');
SELECT bucket, leads, converted, min_score, max_score FROM leadscore.lift('SELECT x, y FROM (VALUES (1, 1), (1, 0), (2, 1), (NULL, 1)) v (x, y)', 4);
SELECT bin, lower, upper, leads, converted, round(mean_predicted::numeric, 2) AS mean_predicted,
       round(observed_rate::numeric, 2) AS observed
  FROM leadscore.calibration('SELECT leadscore.predict(''planted'', h), converted FROM hist h', 5);

-- A rules model over the same leads: conversion per stage, and the rules calibrated from history.
INSERT INTO leadscore.model (name) VALUES ('fit');
SELECT leadscore.track_leads('fit', 'hist', 'id');
CREATE TABLE visit (lead_id int, page text, at timestamptz);
INSERT INTO visit SELECT id, 'pricing', timestamptz '2026-01-01' + id * interval '1 minute'
  FROM hist WHERE x1 > 1 AND id % 2 = 0;
SELECT leadscore.track_events('fit', 'visit', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('fit', 'pro plan', 'hist', $$plan = 'pro'$$, 20),
	('fit', 'free plan', 'hist', $$plan = 'free'$$, -10),
	('fit', 'b2b', 'hist', 'b2b', 5),
	('fit', 'engaged', 'hist', 'x1 > 0', 10),
	('fit', 'pricing page', 'visit', $$page = 'pricing'$$, 15);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('fit', 'cold', '-Infinity'), ('fit', 'warm', 10),
	('fit', 'MQL', 30);
SELECT stage, leads, converted, round(conversion_rate::numeric, 3) AS rate
  FROM leadscore.conversion_by_stage('fit', 'SELECT id, converted FROM hist');
SELECT grp, leads, converted, round(conversion_rate::numeric, 3) AS rate
  FROM leadscore.conversion_by_group('SELECT plan, converted FROM hist', '{pro,basic}');
SELECT rule, kind, points, matches, round(match_rate::numeric, 3) AS match_rate,
       round(conversion_rate::numeric, 3) AS rate, round(baseline_rate::numeric, 3) AS baseline,
       round(lift::numeric, 2) AS lift, round(points_difference::numeric, 1) AS points_difference,
       round(coefficient::numeric, 2) AS coefficient, round(points_logistic::numeric, 1) AS points_logistic
  FROM leadscore.calibrate_rules('fit', 'SELECT * FROM public.hist');
SELECT rule, round(points_logistic::numeric, 1) AS points_logistic
  FROM leadscore.calibrate_rules('fit', 'SELECT * FROM public.hist', threshold => 100, target_rate => 0.6);
-- Only the events before each lead's outcome date (here: half of the leads' visits come after it).
SELECT rule, matches FROM leadscore.calibrate_rules('fit',
  $$SELECT *, timestamptz '2026-01-01' + id * interval '1 minute' + CASE WHEN id % 4 = 0 THEN interval '1 hour'
            ELSE interval '-1 hour' END AS decided_at FROM public.hist$$, events_before => 'decided_at')
 WHERE kind = 'event';

-- Trained models (and the queries that trained them) are readable by the roles granted them (1.4: not
-- PUBLIC); the analyst profile reads, predicts and trains.
CREATE ROLE regress_predict_reader;
SET ROLE regress_predict_reader;
SELECT count(*) > 0 AS readable FROM leadscore.coefficients;
SELECT version FROM leadscore.train('nope', 'SELECT 1 AS x, true AS converted UNION ALL SELECT 2, false');
RESET ROLE;
SELECT leadscore.grant_profile('analyst', 'regress_predict_reader');
SET ROLE regress_predict_reader;
SELECT count(*) > 0 AS readable FROM leadscore.coefficients;
SELECT round(leadscore.predict('planted', r)::numeric, 4) AS p
  FROM (SELECT 'pro'::text AS plan, NULL::float8 AS x2, 1 AS x1, true AS b2b) r;
SELECT version, rows FROM leadscore.train('granted', 'SELECT 1 AS x, true AS converted UNION ALL SELECT 2, false');
RESET ROLE;
SELECT name, version, trained_by FROM leadscore.predictive_model WHERE name = 'granted';
DELETE FROM leadscore.predictive_model WHERE name = 'granted';
SELECT leadscore.revoke_profile('analyst', 'regress_predict_reader');
DROP ROLE regress_predict_reader;

DELETE FROM leadscore.model WHERE name = 'fit';
DROP TABLE visit;
DROP TABLE hist;
DROP EXTENSION leadscore;
