-- Predictive scoring, bad input: every refusal has a clear message and an SQLSTATE, and a failed training
-- writes nothing.
CREATE EXTENSION leadscore;
\set VERBOSITY default
CREATE TABLE lead_history (id int, employees int, industry text, signup date, spend float8, converted boolean,
                           outcome int, status text);
INSERT INTO lead_history SELECT g, g * 10, (ARRAY['it', 'retail', 'bank'])[1 + g % 3], date '2026-01-01' + g,
                                g * 1.5, g % 3 = 0, (g % 3 = 0)::int, CASE WHEN g % 3 = 0 THEN 'won' ELSE 'lost' END
  FROM generate_series(1, 30) g;
CREATE FUNCTION models() RETURNS text LANGUAGE sql AS
	$$SELECT (SELECT count(*) FROM leadscore.predictive_model) || ' models, '
	      || (SELECT count(*) FROM leadscore.predictive_term) || ' terms'$$;

-- The label: not boolean or 0/1, NULL, missing.
SELECT * FROM leadscore.train('bad', 'SELECT employees, status FROM lead_history', 'status');
SELECT * FROM leadscore.train('bad', 'SELECT employees, outcome * 2 AS outcome FROM lead_history', 'outcome');
SELECT * FROM leadscore.train('bad', 'SELECT employees, CASE WHEN id > 1 THEN converted END AS converted FROM lead_history');
SELECT * FROM leadscore.train('bad', 'SELECT employees FROM lead_history', 'won');
-- One class only; no rows.
SELECT * FROM leadscore.train('bad', 'SELECT employees, false AS converted FROM lead_history');
SELECT * FROM leadscore.train('bad', 'SELECT employees, converted FROM lead_history WHERE id < 0');
-- A value that is not finite (float8 and numeric).
SELECT * FROM leadscore.train('bad', $$SELECT CASE WHEN id = 7 THEN 'Infinity' ELSE spend END AS spend, converted FROM lead_history$$);
SELECT * FROM leadscore.train('bad', $$SELECT CASE WHEN id = 7 THEN 'NaN'::numeric ELSE id END AS n, converted FROM lead_history$$);
-- Too many categories (an id used as a category), too many design columns.
SELECT * FROM leadscore.train('bad', 'SELECT id::text AS lead_ref, converted FROM lead_history', max_distinct => 10);
-- A column of a type that is no feature; features that do not exist or repeat the label.
SELECT * FROM leadscore.train('bad', 'SELECT signup, converted FROM lead_history');
SELECT * FROM leadscore.train('bad', 'SELECT * FROM lead_history', features => '{employees,revenue}');
SELECT * FROM leadscore.train('bad', 'SELECT * FROM lead_history', features => '{employees,converted}');
SELECT * FROM leadscore.train('bad', 'SELECT converted FROM lead_history');
-- A query that fails: syntax, unknown table, not a SELECT, an error half-way through the rows.
SELECT * FROM leadscore.train('bad', 'SELEC employees, converted FROM lead_history');
SELECT * FROM leadscore.train('bad', 'SELECT employees, converted FROM no_such_table');
SELECT * FROM leadscore.train('bad', 'DELETE FROM lead_history RETURNING employees, converted');
SELECT * FROM leadscore.train('bad', 'SELECT employees / (id - 20) AS e, converted FROM lead_history');
-- Options out of range; NULL arguments.
SELECT * FROM leadscore.train('bad', 'SELECT employees, converted FROM lead_history', lambda => -1);
SELECT * FROM leadscore.train('bad', 'SELECT employees, converted FROM lead_history', max_iterations => 0);
SELECT * FROM leadscore.train('bad', 'SELECT employees, converted FROM lead_history', lambda => 'NaN');
SELECT * FROM leadscore.train(NULL, 'SELECT employees, converted FROM lead_history');
SELECT * FROM leadscore.train('bad', NULL);
SELECT * FROM leadscore.train('', 'SELECT employees, converted FROM lead_history');
-- Naive Bayes: categorical columns only, a positive smoothing.
SELECT * FROM leadscore.train_bayes('bad', 'SELECT industry, employees, converted FROM lead_history');
SELECT * FROM leadscore.train_bayes('bad', 'SELECT industry, converted FROM lead_history', alpha => 0);
SELECT * FROM leadscore.train_bayes('bad', 'SELECT industry, false AS converted FROM lead_history');
SELECT * FROM leadscore.train_bayes('bad', 'SELECT industry, converted FROM lead_history', max_levels => NULL);
-- Classes separated by a column, without a penalty: no finite maximum-likelihood fit.
SELECT * FROM leadscore.train('bad', 'SELECT outcome AS o, converted FROM lead_history', lambda => 0);
-- Nothing was written.
SELECT models();
-- A failure after a good training in the same transaction leaves the good one only, as transactions do.
BEGIN;
SELECT version, rows FROM leadscore.train('good', 'SELECT employees, industry, converted FROM lead_history');
SAVEPOINT s;
SELECT * FROM leadscore.train('good', 'SELECT employees / (id - 20) AS employees, converted FROM lead_history');
ROLLBACK TO s;
SELECT models();
COMMIT;

-- Prediction: unknown model, a row without a feature column or with one of another kind.
SELECT leadscore.predict('nope', h) FROM lead_history h LIMIT 1;
SELECT leadscore.predict('good', r) FROM (SELECT 10 AS employees) r;
SELECT leadscore.predict('good', r) FROM (SELECT 'ten'::text AS employees, 'it'::text AS industry) r;
SELECT leadscore.predict('good', r) FROM (SELECT 10 AS employees, 3 AS industry) r;
SELECT leadscore.predict('good', r) FROM (SELECT 'Infinity'::float8 AS employees, 'it'::text AS industry) r;
SELECT leadscore.predict('good', NULL::record) IS NULL AS strict;
-- A model whose rows were edited into nonsense is refused when read.
UPDATE leadscore.predictive_term SET coefficient = 1 WHERE model = 'good' AND term = 'reference';
SELECT leadscore.predict('good', h) FROM lead_history h LIMIT 1;
UPDATE leadscore.predictive_term SET coefficient = 0 WHERE model = 'good' AND term = 'reference';
SELECT round(leadscore.predict('good', h)::numeric, 3) AS p FROM lead_history h ORDER BY id LIMIT 1;

-- Quality functions: a NaN score, a label that is not 0/1, a score that is no number, probabilities out of
-- [0, 1], a query returning too few columns, bad bucket counts.
SELECT leadscore.auc(x, y) FROM (VALUES ('NaN'::float8, true)) v (x, y);
SELECT leadscore.auc(x, y) FROM (VALUES (NULL::float8, true), (1, NULL)) v (x, y);
SELECT * FROM leadscore.lift('SELECT employees, outcome + 1 FROM lead_history');
SELECT * FROM leadscore.lift('SELECT industry, converted FROM lead_history');
SELECT * FROM leadscore.lift('SELECT employees FROM lead_history');
SELECT * FROM leadscore.lift('SELECT employees, converted FROM lead_history', 0);
SELECT * FROM leadscore.calibration('SELECT employees, converted FROM lead_history');
SELECT * FROM leadscore.conversion_by_stage('nope', 'SELECT id, converted FROM lead_history');
SELECT * FROM leadscore.calibrate_rules('nope', 'SELECT * FROM lead_history');
SELECT * FROM leadscore.calibrate_rules('nope', 'SELECT * FROM lead_history', target_rate => 1);

-- NULL arguments never crash: an error, or NULL for the strict functions.
SELECT * FROM leadscore.lift(NULL);
SELECT count(*) FROM leadscore.lift('SELECT employees, converted FROM lead_history', NULL);
SELECT * FROM leadscore.calibration(NULL);
SELECT * FROM leadscore.conversion_by_group(NULL);
SELECT * FROM leadscore.conversion_by_group('SELECT industry, converted FROM lead_history', NULL) ORDER BY grp;
SELECT * FROM leadscore.conversion_by_stage(NULL, NULL);
SELECT * FROM leadscore.calibrate_rules(NULL, NULL);
SELECT * FROM leadscore.train_bayes(NULL, NULL);
SELECT * FROM leadscore._rule_stats(NULL, NULL);
SELECT count(*) FROM leadscore.explain_prediction(NULL, NULL::record);
SELECT leadscore.predict(NULL, h), leadscore.predict_log_odds('good', NULL::record) FROM lead_history h LIMIT 1;

DELETE FROM leadscore.predictive_model;
SELECT models();
DROP FUNCTION models();
DROP TABLE lead_history;
DROP EXTENSION leadscore;
