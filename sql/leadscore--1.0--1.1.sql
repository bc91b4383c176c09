-- leadscore 1.1: predictive scoring and score quality, inside the database.
-- A fresh install runs leadscore--1.0.sql then this script; an existing 1.0 runs this script alone.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.1'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Trained models: rows anyone can read, one version per training run (retraining adds a version).
-- User data: dumped by pg_dump.
--------------------------------------------------------------------------------------------------

CREATE TABLE leadscore.predictive_model (
	name text NOT NULL,
	version int NOT NULL,
	label text NOT NULL,
	query text NOT NULL,
	features text[] NOT NULL,
	feature_kinds text[] NOT NULL,
	method text NOT NULL DEFAULT 'logistic' CHECK (method IN ('logistic', 'naive_bayes')),
	lambda float8,
	rows bigint NOT NULL,
	positives bigint NOT NULL,
	iterations int NOT NULL,
	converged boolean NOT NULL,
	deviance float8,
	null_deviance float8,
	auc float8,
	log_loss float8,
	train_seconds float8,
	options jsonb,
	trained_at timestamptz NOT NULL DEFAULT now(),
	trained_by name NOT NULL DEFAULT current_user,
	description text,
	PRIMARY KEY (name, version),
	CONSTRAINT "one kind per feature" CHECK (cardinality(features) = cardinality(feature_kinds))
);
COMMENT ON TABLE leadscore.predictive_model IS
	'trained models (logistic regression or naive Bayes), one row per version: label, query, features, fit and training metrics (auc and log_loss on the training rows)';

CREATE TABLE leadscore.predictive_term (
	model text NOT NULL,
	version int NOT NULL,
	ord int NOT NULL,
	feature text NOT NULL,
	term text NOT NULL CHECK (term IN ('intercept', 'value', 'missing', 'level', 'reference')),
	level text,
	coefficient float8 NOT NULL,
	odds_ratio float8 NOT NULL,
	std_coefficient float8 NOT NULL,
	mean float8 NOT NULL,
	std float8 NOT NULL,
	count bigint NOT NULL,
	PRIMARY KEY (model, version, ord),
	FOREIGN KEY (model, version) REFERENCES leadscore.predictive_model (name, version)
		ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON TABLE leadscore.predictive_term IS
	'coefficients of trained models: log-odds per unit of a column (value), when it is missing (missing), per categorical level against the reference level (level, reference)';

SELECT pg_catalog.pg_extension_config_dump('leadscore.predictive_model', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.predictive_term', '');

CREATE VIEW leadscore.predictive_models AS
	SELECT DISTINCT ON (name) * FROM leadscore.predictive_model ORDER BY name, version DESC;
COMMENT ON VIEW leadscore.predictive_models IS 'the latest version of every trained model';

CREATE VIEW leadscore.coefficients AS
	SELECT t.model, t.version, t.ord, t.feature, t.term, t.level,
	       CASE t.term WHEN 'intercept' THEN '(intercept)' WHEN 'value' THEN t.feature
	                   WHEN 'missing' THEN t.feature || ' is missing' ELSE t.feature || ' = ' || t.level END AS name,
	       t.coefficient, t.odds_ratio, t.std_coefficient, t.mean, t.std, t.count
	  FROM leadscore.predictive_term t
	  JOIN leadscore.predictive_models m ON m.name = t.model AND m.version = t.version;
COMMENT ON VIEW leadscore.coefficients IS
	'the coefficients of the latest version of every trained model, with a readable name per term';

CREATE FUNCTION leadscore._predictive_changed() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_predictive_changed';
COMMENT ON FUNCTION leadscore._predictive_changed() IS
	'internal: makes every session reload its trained models (at once here, at commit elsewhere)';

CREATE TRIGGER predictive_model_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadscore.predictive_model
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._predictive_changed();
CREATE TRIGGER predictive_term_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadscore.predictive_term
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._predictive_changed();

GRANT SELECT ON leadscore.predictive_model, leadscore.predictive_term, leadscore.predictive_models,
	leadscore.coefficients TO PUBLIC;

--------------------------------------------------------------------------------------------------
-- Training and prediction
--------------------------------------------------------------------------------------------------

-- Not SECURITY DEFINER and no fixed search_path: the query runs as the caller, resolving names as the
-- caller does. The function's own statements name everything with its schema.
CREATE FUNCTION leadscore.train(name text, query text, label text DEFAULT 'converted', features text[] DEFAULT NULL,
                                lambda float8 DEFAULT 1, max_iterations int DEFAULT 100, max_levels int DEFAULT 50,
                                min_level_count int DEFAULT 1, max_distinct int DEFAULT 10000,
                                OUT version int, OUT rows bigint, OUT positives bigint, OUT iterations int,
                                OUT converged boolean, OUT auc float8, OUT log_loss float8, OUT seconds float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_train';
COMMENT ON FUNCTION leadscore.train(text, text, text, text[], float8, int, int, int, int) IS
	'trains an L2-regularised logistic regression on the rows of a query (label: boolean or 0/1; features: every other column, or those listed) and stores it as a new version of the named model';

CREATE FUNCTION leadscore.train_bayes(name text, query text, label text DEFAULT 'converted', features text[] DEFAULT NULL,
                                      alpha float8 DEFAULT 1, max_levels int DEFAULT 50, min_level_count int DEFAULT 1,
                                      max_distinct int DEFAULT 10000,
                                      OUT version int, OUT rows bigint, OUT positives bigint, OUT iterations int,
                                      OUT converged boolean, OUT auc float8, OUT log_loss float8, OUT seconds float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_train_bayes';
COMMENT ON FUNCTION leadscore.train_bayes(text, text, text, text[], float8, int, int, int) IS
	'trains a naive Bayes model over categorical columns (frequencies of each value among converted and other leads, Laplace smoothing alpha, as Odoo CRM''s predictive scoring) and stores it as a new version of the named model';

CREATE FUNCTION leadscore.predict(model text, lead record) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'leadscore_predict';
COMMENT ON FUNCTION leadscore.predict(text, record) IS
	'probability that a lead converts, by the latest version of a trained model; the row has the model''s feature columns by name';

CREATE FUNCTION leadscore.predict_log_odds(model text, lead record) RETURNS float8
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'leadscore_predict_log_odds';
COMMENT ON FUNCTION leadscore.predict_log_odds(text, record) IS
	'log-odds of conversion of a lead, by the latest version of a trained model';

CREATE FUNCTION leadscore.explain_prediction(model text, lead record)
	RETURNS TABLE (feature text, level text, value text, contribution float8)
	LANGUAGE c STABLE STRICT PARALLEL SAFE ROWS 20
	AS 'MODULE_PATHNAME', 'leadscore_explain_prediction';
COMMENT ON FUNCTION leadscore.explain_prediction(text, record) IS
	'each feature''s contribution to a lead''s log-odds against the average lead (baseline); the lines sum to the log-odds';

--------------------------------------------------------------------------------------------------
-- Measuring any score
--------------------------------------------------------------------------------------------------

CREATE FUNCTION leadscore._auc_trans(internal, float8, boolean) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'leadscore_auc_trans';
COMMENT ON FUNCTION leadscore._auc_trans(internal, float8, boolean) IS 'internal: transition of auc';
CREATE FUNCTION leadscore._auc_final(internal) RETURNS float8
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'leadscore_auc_final';
COMMENT ON FUNCTION leadscore._auc_final(internal) IS 'internal: final function of auc';
CREATE FUNCTION leadscore._auc_combine(internal, internal) RETURNS internal
	LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'leadscore_auc_combine';
COMMENT ON FUNCTION leadscore._auc_combine(internal, internal) IS 'internal: combine function of auc';
CREATE FUNCTION leadscore._auc_serialize(internal) RETURNS bytea
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'leadscore_auc_serialize';
COMMENT ON FUNCTION leadscore._auc_serialize(internal) IS 'internal: serialize function of auc';
CREATE FUNCTION leadscore._auc_deserialize(bytea, internal) RETURNS internal
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'leadscore_auc_deserialize';
COMMENT ON FUNCTION leadscore._auc_deserialize(bytea, internal) IS 'internal: deserialize function of auc';

CREATE AGGREGATE leadscore.auc(score float8, converted boolean) (
	SFUNC = leadscore._auc_trans,
	STYPE = internal,
	FINALFUNC = leadscore._auc_final,
	COMBINEFUNC = leadscore._auc_combine,
	SERIALFUNC = leadscore._auc_serialize,
	DESERIALFUNC = leadscore._auc_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadscore.auc(float8, boolean) IS
	'area under the ROC curve of a score against conversions (ties count 1/2), exact; NULL when a class is absent';

CREATE FUNCTION leadscore.lift(query text, buckets int DEFAULT 10)
	RETURNS TABLE (bucket int, leads bigint, converted bigint, min_score float8, max_score float8,
	               conversion_rate float8, lift float8, cumulative_leads bigint, cumulative_converted bigint,
	               cumulative_lift float8, capture_rate float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_lift';
COMMENT ON FUNCTION leadscore.lift(text, int) IS
	'lift per bucket of scores, highest first (10: deciles); the query returns (score, converted); ties stay in one bucket';

CREATE FUNCTION leadscore.calibration(query text, bins int DEFAULT 10)
	RETURNS TABLE (bin int, lower float8, upper float8, leads bigint, converted bigint, mean_predicted float8,
	               observed_rate float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_calibration';
COMMENT ON FUNCTION leadscore.calibration(text, int) IS
	'calibration table: bins of equal width of predicted probability, mean prediction against observed conversion; the query returns (probability, converted)';

CREATE FUNCTION leadscore.conversion_by_group(query text, groups text[] DEFAULT '{}')
	RETURNS TABLE (grp text, leads bigint, converted bigint, conversion_rate float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_conversion_by_group';
COMMENT ON FUNCTION leadscore.conversion_by_group(text, text[]) IS
	'conversion rate per group; the query returns (group, converted); groups lists groups shown first, in order, present or not';

-- No fixed search_path: the query resolves names as the caller does; the body names everything with its schema.
CREATE FUNCTION leadscore.conversion_by_stage(model text, query text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (stage text, leads bigint, converted bigint, conversion_rate float8)
	LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name OPERATOR(pg_catalog.=) conversion_by_stage.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	RETURN QUERY
	SELECT g.grp, g.leads, g.converted, g.conversion_rate
	  FROM leadscore.conversion_by_group(
	         pg_catalog.format('SELECT s.stage, q.converted FROM (%s) AS q (lead, converted) '
	                           'LEFT JOIN leadscore.scores_at(%L, %L) s ON s.lead OPERATOR(pg_catalog.=) q.lead::text',
	                           query, model, as_of),
	         ARRAY(SELECT st.name FROM leadscore.stage st WHERE st.model OPERATOR(pg_catalog.=) conversion_by_stage.model
	                ORDER BY st.min_score)) g;
END
$$;
COMMENT ON FUNCTION leadscore.conversion_by_stage(text, text, timestamptz) IS
	'conversion rate per stage of a model (lowest first, then leads without a stage); the query returns (lead, converted)';

--------------------------------------------------------------------------------------------------
-- From history to points
--------------------------------------------------------------------------------------------------

CREATE FUNCTION leadscore._rule_stats(query text, lambda float8)
	RETURNS TABLE (ord int, rule text, leads bigint, converted bigint, coefficient float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_rule_stats';
COMMENT ON FUNCTION leadscore._rule_stats(text, float8) IS
	'internal: matches and conversions per rule column of a query, and a logistic fit over the rule matches';

-- Rule conditions resolve names in pg_catalog, then public (as everywhere); so does the query.
CREATE FUNCTION leadscore.calibrate_rules(model text, query text, label text DEFAULT 'converted',
                                          threshold float8 DEFAULT NULL, target_rate float8 DEFAULT 0.5,
                                          lambda float8 DEFAULT 1, events_before text DEFAULT NULL)
	RETURNS TABLE (rule text, kind text, points float8, matches bigint, match_rate float8, converted bigint,
	               conversion_rate float8, baseline_rate float8, lift float8, points_difference float8,
	               coefficient float8, points_logistic float8)
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, public
AS $$
#variable_conflict use_column
DECLARE
	key name;
	lead_table regclass;
	cols text := '';
	r record;
	t float8;
BEGIN
	IF model IS NULL OR query IS NULL OR label IS NULL OR target_rate IS NULL OR lambda IS NULL THEN
		RAISE EXCEPTION 'leadscore.calibrate_rules: model, query, label, target_rate and lambda must not be NULL'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT (target_rate > 0 AND target_rate < 1) THEN
		RAISE EXCEPTION 'leadscore.calibrate_rules: target_rate must be between 0 and 1, exclusive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = calibrate_rules.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	SELECT tt.lead_column, tt.relid INTO key, lead_table FROM leadscore.tracked_table tt
	 WHERE tt.model = calibrate_rules.model AND tt.role = 'lead';
	-- One boolean column per enabled rule: a lead rule's condition over the query's row, an event rule's
	-- "at least one matching event" of the lead (the query then has the lead table's key column).
	-- With events_before (a timestamp column of the query, such as the date the outcome became known),
	-- only the events dated before it count: behaviour after the outcome would leak it.
	FOR r IN SELECT ru.name, ru.condition, ru.source, tt.role, tt.lead_column, tt.time_column
	           FROM leadscore.rule ru JOIN leadscore.tracked_table tt ON tt.model = ru.model AND tt.relid = ru.source
	          WHERE ru.model = calibrate_rules.model AND ru.enabled ORDER BY ru.name LOOP
		IF r.role = 'lead' THEN
			cols := cols || format(', coalesce((%s), false) AS %I', r.condition, r.name);
		ELSE
			IF events_before IS NOT NULL AND r.time_column IS NULL THEN
				RAISE EXCEPTION 'rule "%" of model "%": table % has no time column to compare with events_before',
					r.name, model, r.source USING ERRCODE = 'invalid_parameter_value';
			END IF;
			cols := cols || format(', EXISTS (SELECT FROM %s e WHERE e.%I = q.%I AND (%s)%s) AS %I',
			                       r.source, r.lead_column, key, r.condition,
			                       CASE WHEN events_before IS NOT NULL
			                            THEN format(' AND e.%I < q.%I', r.time_column, events_before) ELSE '' END,
			                       r.name);
		END IF;
	END LOOP;
	IF cols = '' THEN
		RAISE EXCEPTION 'model "%" has no enabled rule', model USING ERRCODE = 'invalid_parameter_value';
	END IF;

	-- Logistic points: linear in the log-odds, 0 for a lead matching no rule, the threshold for a lead whose
	-- conversion probability is target_rate (NULL when leads matching no rule already convert that often).
	t := coalesce(threshold, (SELECT max(st.min_score) FROM leadscore.stage st
	                           WHERE st.model = calibrate_rules.model AND st.min_score > '-Infinity'), 100);
	RETURN QUERY
	WITH s AS MATERIALIZED (
		SELECT * FROM leadscore._rule_stats(format('SELECT q.%I%s FROM (%s) q', label, cols, query), lambda)),
	     a AS (SELECT s.leads AS total, s.converted AS positives,
	                  t / (ln(target_rate / (1 - target_rate)) - s.coefficient) AS factor
	             FROM s WHERE s.ord = 0)
	SELECT s.rule, tt.role, ru.points, s.leads, s.leads::float8 / a.total, s.converted,
	       CASE WHEN s.leads > 0 THEN s.converted::float8 / s.leads END,
	       a.positives::float8 / a.total,
	       CASE WHEN s.leads > 0 AND a.positives > 0
	            THEN (s.converted::float8 / s.leads) / (a.positives::float8 / a.total) END,
	       CASE WHEN s.leads > 0 THEN 100 * (s.converted::float8 / s.leads - a.positives::float8 / a.total) END,
	       s.coefficient,
	       CASE WHEN a.factor > 0 AND a.factor < 'Infinity' THEN s.coefficient * a.factor END
	  FROM s CROSS JOIN a
	  JOIN leadscore.rule ru ON ru.model = calibrate_rules.model AND ru.name = s.rule
	  JOIN leadscore.tracked_table tt ON tt.model = ru.model AND tt.relid = ru.source
	 WHERE s.ord > 0
	 ORDER BY s.ord;
END
$$;
COMMENT ON FUNCTION leadscore.calibrate_rules(text, text, text, float8, float8, float8, text) IS
	'per rule of a model, from a labelled query of leads: match rate, conversion among matches, lift, and suggested points (difference to the baseline rate in percentage points; logistic fit scaled to the threshold)';

--------------------------------------------------------------------------------------------------
-- Predictions inside scoring models: a rule on the lead table may name a trained model; it then gives
-- its points times the probability that model predicts for the lead row, kept live by the triggers.
--------------------------------------------------------------------------------------------------

ALTER TABLE leadscore.rule ADD COLUMN predictor text;
COMMENT ON COLUMN leadscore.rule.predictor IS
	'lead rules only: a model trained with leadscore.train; the rule gives points x the probability its latest version predicts for the lead row';

-- A trained model may not go while a rule uses it.
CREATE FUNCTION leadscore._check_predictors() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	SELECT ru.model, ru.name, ru.predictor INTO r
	  FROM leadscore.rule ru
	 WHERE ru.predictor IS NOT NULL
	   AND NOT EXISTS (SELECT FROM leadscore.predictive_model p WHERE p.name = ru.predictor)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'predictive model "%" is used by rule "%" of model "%"', r.predictor, r.name, r.model
			USING ERRCODE = 'dependent_objects_still_exist',
			      HINT = 'Delete the rule or set its predictor to NULL first.';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._check_predictors() IS 'internal: refuses to delete a trained model that a rule uses';
CREATE TRIGGER predictors_in_use AFTER DELETE OR UPDATE ON leadscore.predictive_model
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._check_predictors();

-- A new (or removed) version changes the predictions: the scoring models that use it are recomputed when
-- the transaction commits, once its terms are all written.
CREATE FUNCTION leadscore._predictor_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text;
	changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
BEGIN
	PERFORM leadscore._invalidate();
	FOR m IN SELECT DISTINCT ru.model FROM leadscore.rule ru
	          WHERE ru.predictor = changed AND ru.enabled ORDER BY 1 LOOP
		IF leadscore._is_live(m) THEN
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._predictor_changed() IS
	'internal: at commit, recomputes the scoring models whose rules use a retrained (or removed) model';
CREATE CONSTRAINT TRIGGER predictor_changed AFTER INSERT OR DELETE ON leadscore.predictive_model
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION leadscore._predictor_changed();

--------------------------------------------------------------------------------------------------
-- The live trigger switches to the extension's owner and a search path of pg_catalog itself (since
-- the library of 1.1): cheaper than SECURITY DEFINER and SET search_path on every statement.
--------------------------------------------------------------------------------------------------

ALTER FUNCTION leadscore._track_trigger() SECURITY INVOKER;
ALTER FUNCTION leadscore._track_trigger() RESET search_path;

--------------------------------------------------------------------------------------------------
-- Time: a grace period before the engagement decays, inactivity steps.
--------------------------------------------------------------------------------------------------

ALTER TABLE leadscore.model ADD COLUMN grace interval;
ALTER TABLE leadscore.model ADD CONSTRAINT "grace must be positive" CHECK (grace > interval '0');
ALTER TABLE leadscore.model ADD CONSTRAINT "grace needs a half_life" CHECK (grace IS NULL OR half_life IS NOT NULL);
COMMENT ON COLUMN leadscore.model.grace IS
	'with a half_life: events keep their full value until the lead has been inactive this long, then the whole engagement halves every half_life';

CREATE TABLE leadscore.inactivity_rule (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	name text NOT NULL,
	after interval NOT NULL,
	points float8 NOT NULL,
	PRIMARY KEY (model, name),
	CONSTRAINT "one inactivity step per interval" UNIQUE (model, after),
	CONSTRAINT "inactivity interval must be positive" CHECK (after > interval '0'),
	CONSTRAINT "inactivity points must be finite" CHECK (points NOT IN ('Infinity', '-Infinity', 'NaN'))
);
COMMENT ON TABLE leadscore.inactivity_rule IS
	'points applied while a lead''s latest event is at least `after` old; steps are exclusive: the longest reached applies';
SELECT pg_catalog.pg_extension_config_dump('leadscore.inactivity_rule', '');
GRANT SELECT ON leadscore.inactivity_rule TO PUBLIC;

CREATE TRIGGER inactivity_rule_insert AFTER INSERT ON leadscore.inactivity_rule REFERENCING NEW TABLE AS leadscore_new
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed();
CREATE TRIGGER inactivity_rule_update AFTER UPDATE ON leadscore.inactivity_rule
	REFERENCING OLD TABLE AS leadscore_old NEW TABLE AS leadscore_new
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed();
CREATE TRIGGER inactivity_rule_delete AFTER DELETE ON leadscore.inactivity_rule REFERENCING OLD TABLE AS leadscore_old
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed();

CREATE FUNCTION leadscore._validate() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'leadscore_validate';
COMMENT ON FUNCTION leadscore._validate() IS 'internal: reloads the configuration, refusing a model that cannot score';
CREATE FUNCTION leadscore._check_config() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM leadscore._validate();
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._check_config() IS 'internal: checks the models after a configuration change';
CREATE TRIGGER check_inactivity_rule AFTER INSERT OR UPDATE ON leadscore.inactivity_rule
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._check_config();

--------------------------------------------------------------------------------------------------
-- Stage changes caused by time alone. Each state row of a model with stages knows when its stage may
-- next change (next_change, indexed): leadscore.advance_stages(), run every minute by a scheduler,
-- records the changes due, each once, at the instant it happened; its cost follows the number of leads
-- due, not the number of leads.
--------------------------------------------------------------------------------------------------

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format('ALTER TABLE leadscore.state_%s ADD COLUMN next_change timestamptz', t);
		EXECUTE format('CREATE INDEX state_%1$s_next_change ON leadscore.state_%1$s (next_change) '
		               'WHERE next_change IS NOT NULL', t);
		EXECUTE format($c$COMMENT ON COLUMN leadscore.state_%s.next_change IS
			'internal: the stage cannot change by time alone before this instant (NULL: never)'$c$, t);
	END LOOP;
END
$$;

CREATE FUNCTION leadscore.advance_stages(as_of timestamptz DEFAULT now()) RETURNS bigint
	LANGUAGE c VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_advance_stages';
COMMENT ON FUNCTION leadscore.advance_stages(timestamptz) IS
	'records (and notifies) every stage change that time alone caused until as_of, each once, at the instant it happened; returns how many';
REVOKE ALL ON FUNCTION leadscore.advance_stages(timestamptz) FROM PUBLIC;

CREATE FUNCTION leadscore._advance_model(model text) RETURNS bigint
	LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'leadscore_advance_model';
COMMENT ON FUNCTION leadscore._advance_model(text) IS
	'internal: before a model''s configuration changes, records its stage changes due so far under the old one';

-- A configuration change first records the stage changes time caused under the configuration they
-- happened with.
CREATE OR REPLACE FUNCTION leadscore._config_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	models text[];
	m text;
BEGIN
	IF TG_OP = 'INSERT' THEN
		SELECT array_agg(DISTINCT n.model) INTO models FROM leadscore_new n;
	ELSIF TG_OP = 'UPDATE' THEN
		SELECT array_agg(DISTINCT x.model) INTO models
		  FROM (SELECT model FROM leadscore_new UNION SELECT model FROM leadscore_old) x;
	ELSE
		SELECT array_agg(DISTINCT o.model) INTO models FROM leadscore_old o;
	END IF;
	FOREACH m IN ARRAY coalesce(models, '{}') LOOP
		PERFORM leadscore._advance_model(m);
	END LOOP;
	PERFORM leadscore._invalidate();
	FOREACH m IN ARRAY coalesce(models, '{}') LOOP
		IF leadscore._is_live(m) THEN
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION leadscore._model_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
	t text;
BEGIN
	IF TG_OP = 'UPDATE' THEN
		FOR m IN SELECT o.name FROM leadscore_old o LOOP
			PERFORM leadscore._advance_model(m.name);
		END LOOP;
	END IF;
	PERFORM leadscore._invalidate();
	IF TG_OP = 'DELETE' THEN
		FOR m IN SELECT o.id FROM leadscore_old o LOOP
			FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
				EXECUTE format('DELETE FROM leadscore.state_%s WHERE model_id = $1', t) USING m.id;
			END LOOP;
		END LOOP;
	ELSIF TG_OP = 'UPDATE' THEN
		FOR m IN SELECT n.name, n.half_life FROM leadscore_new n LOOP
			IF m.half_life IS NOT NULL AND EXISTS (
				SELECT FROM leadscore.tracked_table t
				 WHERE t.model = m.name AND t.role = 'event' AND t.time_column IS NULL) THEN
				RAISE EXCEPTION 'model "%" tracks an event table without time column: it cannot decay', m.name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF leadscore._is_live(m.name) THEN
				PERFORM leadscore.recompute(m.name);
			END IF;
		END LOOP;
	END IF;
	RETURN NULL;
END
$$;

-- Every lead state of a live model gets its next_change now (and nothing else changes).
SELECT leadscore.recompute(m.name) FROM leadscore.model m WHERE leadscore._is_live(m.name) ORDER BY m.id;

--------------------------------------------------------------------------------------------------
-- Score history for BI: a snapshot of every lead's score and stage per day.
--------------------------------------------------------------------------------------------------

CREATE TABLE leadscore.score_snapshot (
	day date NOT NULL,
	model text NOT NULL,
	lead text NOT NULL,
	score float8 NOT NULL,
	fit float8 NOT NULL,
	engagement float8 NOT NULL,
	stage text,
	grade text,
	last_activity timestamptz,
	taken_at timestamptz NOT NULL,
	PRIMARY KEY (day, model, lead)
);
CREATE INDEX score_snapshot_lead ON leadscore.score_snapshot (model, lead, day);
COMMENT ON TABLE leadscore.score_snapshot IS
	'score history for BI: one row per (day, model, lead), written by leadscore.snapshot (the scores at taken_at)';
SELECT pg_catalog.pg_extension_config_dump('leadscore.score_snapshot', '');
GRANT SELECT ON leadscore.score_snapshot TO PUBLIC;

CREATE FUNCTION leadscore.snapshot(model text DEFAULT NULL, day date DEFAULT current_date, as_of timestamptz DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	taken timestamptz := coalesce(as_of, least(now(), (snapshot.day + 1)::timestamptz));
	n bigint;
BEGIN
	IF snapshot.day IS NULL THEN
		RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF snapshot.model IS NOT NULL AND NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = snapshot.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', snapshot.model USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM leadscore.score_snapshot s
	 WHERE s.day = snapshot.day AND (snapshot.model IS NULL OR s.model = snapshot.model);
	INSERT INTO leadscore.score_snapshot (day, model, lead, score, fit, engagement, stage, grade, last_activity, taken_at)
	SELECT snapshot.day, m.name, x.lead, x.score, x.fit, x.engagement, x.stage, x.grade, x.last_activity, taken
	  FROM leadscore.model m, leadscore.scores_at(m.name, taken) x
	 WHERE snapshot.model IS NULL OR m.name = snapshot.model;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION leadscore.snapshot(text, date, timestamptz) IS
	'writes (or rewrites) the day''s snapshot of a model''s (NULL: every model''s) scores, taken at the end of the day or now if earlier (or at as_of); returns the rows written';
REVOKE ALL ON FUNCTION leadscore.snapshot(text, date, timestamptz) FROM PUBLIC;
