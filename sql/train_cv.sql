-- The L2 penalty chosen by k-fold cross-validation (leadscore.train_cv): the lambda of the lowest mean
-- held-out log loss, the folds' metrics stored with the model, the final model the one train gives under
-- that lambda; bad arguments refused.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;

-- 600 past leads, two informative columns and twelve of noise: a penalty helps on held-out rows.
SELECT setseed(0.25);
CREATE TABLE hist AS
SELECT g AS id, x1, x2, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12,
       random() < 1 / (1 + exp(-(1.5 * x1 - x2))) AS converted
  FROM (SELECT g, random() * 2 - 1 AS x1, random() * 2 - 1 AS x2, random() AS n1, random() AS n2, random() AS n3,
               random() AS n4, random() AS n5, random() AS n6, random() AS n7, random() AS n8, random() AS n9,
               random() AS n10, random() AS n11, random() AS n12
          FROM generate_series(1, 600) g) s;
CREATE VIEW hist_q AS SELECT x1, x2, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10, n11, n12, converted FROM hist;

SELECT version, lambda, round(cv_auc::numeric, 3) AS cv_auc, round(cv_log_loss::numeric, 3) AS cv_log_loss, rows,
       positives, converged, round(auc::numeric, 3) AS auc
  FROM leadscore.train_cv('cv', 'SELECT * FROM hist_q', folds => 5, lambdas => ARRAY[0, 1, 10, 100, 1000]);

-- What the cross-validation saw: five folds of about 120 rows, each candidate's held-out metrics.
SELECT m.lambda, m.options->'cv'->>'folds' AS folds, m.options->'cv'->>'lambda' AS chosen,
       (SELECT sum(f::int) FROM jsonb_array_elements_text(m.options->'cv'->'fold_rows') f) AS fold_rows
  FROM leadscore.predictive_model m WHERE m.name = 'cv';
SELECT (c->>'lambda')::float8 AS lambda, round((c->>'auc')::numeric, 3) AS mean_auc,
       round((c->>'log_loss')::numeric, 4) AS mean_log_loss, jsonb_array_length(c->'fold_auc') AS folds,
       round((SELECT avg(x::float8) FROM jsonb_array_elements_text(c->'fold_log_loss') x)::numeric, 4) AS avg_of_folds
  FROM leadscore.predictive_model m, jsonb_array_elements(m.options->'cv'->'candidates') c
 WHERE m.name = 'cv' ORDER BY 1;
-- The lambda chosen has the lowest mean held-out log loss.
SELECT (m.options->'cv'->>'lambda')::float8 = (SELECT (c->>'lambda')::float8
          FROM jsonb_array_elements(m.options->'cv'->'candidates') c ORDER BY (c->>'log_loss')::float8, (c->>'lambda')::float8 DESC LIMIT 1)
       AS lowest_log_loss
  FROM leadscore.predictive_model m WHERE m.name = 'cv';
-- The model kept is the one train gives on every row under that lambda.
SELECT version FROM leadscore.train('cv_check', 'SELECT * FROM hist_q',
                                    lambda => (SELECT lambda FROM leadscore.predictive_model WHERE name = 'cv'));
SELECT count(*) AS terms, max(abs(a.coefficient - b.coefficient)) < 1e-9 AS same_coefficients
  FROM leadscore.predictive_term a JOIN leadscore.predictive_term b USING (ord)
 WHERE a.model = 'cv' AND b.model = 'cv_check';
-- The default candidates: ten, 1e4 down to 1e-4 (1 / C for scikit-learn's LogisticRegressionCV's Cs = 10).
SELECT version, lambda > 0 AS penalised FROM leadscore.train_cv('cv_default', 'SELECT x1, x2, converted FROM hist', folds => 3);
SELECT jsonb_array_length(options->'cv'->'candidates') AS candidates,
       (options->'cv'->'candidates'->0->>'lambda')::float8 AS largest,
       round(log((options->'cv'->'candidates'->9->>'lambda')::float8)::numeric, 6) AS log10_smallest,
       jsonb_array_length(options->'cv'->'fold_rows') AS folds
  FROM leadscore.predictive_model WHERE name = 'cv_default';

-- Refused: folds out of range, no candidate, a NULL, negative, non-finite or repeated one, fewer rows than
-- folds, NULL arguments, train's own errors. Nothing is stored.
\set VERBOSITY terse
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', folds => 1);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', folds => 101);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', lambdas => '{}');
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', lambdas => ARRAY[1, NULL]);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', lambdas => ARRAY[-1]);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', lambdas => ARRAY['Infinity'::float8]);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', lambdas => ARRAY[1, 1]);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q LIMIT 3');
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', folds => NULL);
SELECT version FROM leadscore.train_cv(NULL, 'SELECT * FROM hist_q');
SELECT version FROM leadscore.train_cv('bad', NULL);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', max_iterations => NULL);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', max_iterations => 0);
SELECT version FROM leadscore.train_cv('bad', 'SELECT * FROM hist_q', label => 'nope');
SELECT version FROM leadscore.train_cv('bad', 'SELECT x1, converted FROM hist_q WHERE x1 < 0.99 ORDER BY converted, x1 LIMIT 50');
SELECT count(*) FROM leadscore.predictive_model WHERE name = 'bad';
\set VERBOSITY default

DROP VIEW hist_q;
DROP TABLE hist;
DELETE FROM leadscore.predictive_model;
DROP EXTENSION leadscore;
