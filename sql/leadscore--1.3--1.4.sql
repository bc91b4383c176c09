-- leadscore 1.3 -> 1.4: least privilege. A condition runs with its author's rights alone, names resolve in
-- pg_catalog only, nothing of leadscore is readable by PUBLIC, and every read path shows a role only the
-- leads it may see in the CRM's lead table (under its row-level security policies).
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.4'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Rule authors
--------------------------------------------------------------------------------------------------

-- The role whose rights a condition runs with: the role that wrote the rule (the trigger check_rule sets
-- it at every INSERT and UPDATE, whatever the row says; a superuser may name another, and a restore keeps
-- the dumped ones). Rules written before 1.4 ran as the extension's owner: they keep that author. No
-- recompute (the rules are the same): the triggers are off while the column is filled.
ALTER TABLE leadscore.rule DISABLE TRIGGER USER;
ALTER TABLE leadscore.rule ADD COLUMN author regrole;
UPDATE leadscore.rule
   SET author = (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'leadscore.rule'::pg_catalog.regclass);
ALTER TABLE leadscore.rule ENABLE TRIGGER USER;
ALTER TABLE leadscore.rule ALTER COLUMN author SET NOT NULL;
COMMENT ON COLUMN leadscore.rule.author IS
	'the role whose rights the condition runs with: set to the writer at every change (a superuser may name another)';

-- Conditions now resolve names in pg_catalog alone: every rule is compiled again, as its author, here. A
-- rule that used an unqualified function of public fails the update with its name (qualify it: public.f).
SELECT leadscore._validate();

-- calibrate_rules evaluates the conditions as SQL, as its caller: each is checked first with the caller's
-- rights, and the query resolves names as the conditions do.
CREATE FUNCTION leadscore._check_condition(source regclass, condition text, rule text, model text) RETURNS void
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'leadscore_check_condition';
COMMENT ON FUNCTION leadscore._check_condition(regclass, text, text, text) IS
	'internal: refuses a condition that the current role could not have written (rights, functions it may not trust)';

--------------------------------------------------------------------------------------------------
-- RFM segments are dumped
--------------------------------------------------------------------------------------------------

-- A model may score the segments (it tracks rfm_<key> as an event table): restored without them, its
-- recompute recorded a stage change for every lead they moved, and the next refresh_rfm the changes back.
-- They are dumped now (their triggers still are not: the recompute that ends a restore puts them back).
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$SELECT pg_catalog.pg_extension_config_dump('leadscore.rfm_%1$s', '')$f$, t);
		EXECUTE format($f$COMMENT ON TABLE leadscore.rfm_%1$s IS
			'RFM segments of leads whose key is %1$s, per model, written by refresh_rfm (dumped; a model may track it as an event table)'$f$, t);
	END LOOP;
END
$$;
SELECT pg_catalog.pg_extension_config_dump('leadscore.rfm_refresh', '');
COMMENT ON TABLE leadscore.rfm_refresh IS
	'the latest refresh_rfm of each model: its arguments, when it ran, leads segmented and rows written (dumped)';

--------------------------------------------------------------------------------------------------
-- Schema changes of tracked tables
--------------------------------------------------------------------------------------------------

-- An ALTER TABLE of a tracked table that would break a tracking or a rule (a renamed or dropped column, a
-- key or time column of another type, a rule's column whose new type its condition does not fit) is
-- refused, naming the model and rule; one that changes a column's type and keeps every rule valid
-- rescores the table's models. (The library checks the tracked columns' types at every load as well.)
CREATE FUNCTION leadscore._on_ddl_end() RETURNS event_trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_on_ddl_end';
COMMENT ON FUNCTION leadscore._on_ddl_end() IS
	'internal: refuses an ALTER TABLE that breaks a tracking or a rule, rescores the models after a column type change';
CREATE EVENT TRIGGER leadscore_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION leadscore._on_ddl_end();

--------------------------------------------------------------------------------------------------
-- Which leads a reader sees
--------------------------------------------------------------------------------------------------

CREATE FUNCTION leadscore._may_read(model_id int, lead anyelement) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
	AS 'MODULE_PATHNAME', 'leadscore_may_read';
COMMENT ON FUNCTION leadscore._may_read(int, anyelement) IS
	'internal: whether the current role sees that lead of the model in its lead table (SELECT on the key column; under row-level security, the lead''s row)';
CREATE FUNCTION leadscore._may_read_named(model text, lead text) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
	AS 'MODULE_PATHNAME', 'leadscore_may_read_named';
COMMENT ON FUNCTION leadscore._may_read_named(text, text) IS
	'internal: _may_read by model name and the lead key as text';
CREATE FUNCTION leadscore._check_read(model text) RETURNS void
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'leadscore_check_read';
COMMENT ON FUNCTION leadscore._check_read(text) IS
	'internal: a permission error unless the current role may read the key column of the model''s lead table';

-- The views read leadscore's tables as their owner and keep the rows of the leads the caller sees
-- (security_barrier: no function of the caller's query sees the other rows first). The score views are
-- built on _states_<key>, so that a join scores only the rows it keeps.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE VIEW leadscore._states_%1$s WITH (security_barrier) AS
			SELECT s.* FROM leadscore.state_%1$s s WHERE leadscore._may_read(s.model_id, s.lead)$f$, t);
		EXECUTE format($f$COMMENT ON VIEW leadscore._states_%1$s IS
			'internal: the state rows of the leads whose key is %1$s that the caller sees (scores_at reads them)'$f$, t);
		EXECUTE format($f$
			CREATE OR REPLACE VIEW leadscore.scores_%1$s AS
			SELECT m.name AS model, s.lead, e.score, e.fit, e.engagement, e.stage, e.grade, e.last_activity,
			       s.n_events AS events
			  FROM leadscore._states_%1$s s
			  JOIN leadscore.model m ON m.id = s.model_id
			 CROSS JOIN LATERAL leadscore._eval(s, now()) e$f$, t);
	END LOOP;
END
$$;

CREATE OR REPLACE VIEW leadscore.stage_changes WITH (security_barrier) AS
	SELECT c.id, m.name AS model, c.lead::text AS lead, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_int4 c JOIN leadscore.model m ON m.id = c.model_id
	 WHERE leadscore._may_read(c.model_id, c.lead)
	UNION ALL
	SELECT c.id, m.name, c.lead::text, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_int8 c JOIN leadscore.model m ON m.id = c.model_id
	 WHERE leadscore._may_read(c.model_id, c.lead)
	UNION ALL
	SELECT c.id, m.name, c.lead::text, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_uuid c JOIN leadscore.model m ON m.id = c.model_id
	 WHERE leadscore._may_read(c.model_id, c.lead)
	UNION ALL
	SELECT c.id, m.name, c.lead, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_text c JOIN leadscore.model m ON m.id = c.model_id
	 WHERE leadscore._may_read(c.model_id, c.lead);

CREATE OR REPLACE VIEW leadscore.engagement_resets WITH (security_barrier) AS
	SELECT r.id, m.name AS model, r.lead::text AS lead, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_int4 r JOIN leadscore.model m ON m.id = r.model_id
	 WHERE leadscore._may_read(r.model_id, r.lead)
	UNION ALL
	SELECT r.id, m.name, r.lead::text, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_int8 r JOIN leadscore.model m ON m.id = r.model_id
	 WHERE leadscore._may_read(r.model_id, r.lead)
	UNION ALL
	SELECT r.id, m.name, r.lead::text, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_uuid r JOIN leadscore.model m ON m.id = r.model_id
	 WHERE leadscore._may_read(r.model_id, r.lead)
	UNION ALL
	SELECT r.id, m.name, r.lead, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_text r JOIN leadscore.model m ON m.id = r.model_id
	 WHERE leadscore._may_read(r.model_id, r.lead);

CREATE OR REPLACE VIEW leadscore.rfm WITH (security_barrier) AS
	SELECT r.model, r.lead::text AS lead, x.as_of, r.last_activity, x.as_of - r.last_activity AS recency, r.frequency,
	       r.volume, r.r, r.f, r.m, r.code
	  FROM leadscore.rfm_int4 r JOIN leadscore.rfm_refresh x ON x.model = r.model
	 WHERE leadscore._may_read_named(r.model, r.lead::text)
	UNION ALL
	SELECT r.model, r.lead::text, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_int8 r JOIN leadscore.rfm_refresh x ON x.model = r.model
	 WHERE leadscore._may_read_named(r.model, r.lead::text)
	UNION ALL
	SELECT r.model, r.lead::text, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_uuid r JOIN leadscore.rfm_refresh x ON x.model = r.model
	 WHERE leadscore._may_read_named(r.model, r.lead::text)
	UNION ALL
	SELECT r.model, r.lead, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_text r JOIN leadscore.rfm_refresh x ON x.model = r.model
	 WHERE leadscore._may_read_named(r.model, r.lead);

CREATE VIEW leadscore.score_snapshots WITH (security_barrier) AS
	SELECT s.* FROM leadscore.score_snapshot s WHERE leadscore._may_read_named(s.model, s.lead);
COMMENT ON VIEW leadscore.score_snapshots IS
	'the daily score snapshots (leadscore.score_snapshot) of the leads the caller sees';

-- scores_at reads the state rows of the leads the caller sees; a role that may not read the model's lead
-- table gets a permission error, not an empty answer.
CREATE OR REPLACE FUNCTION leadscore.scores_at(model text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, stage text, grade text,
	               last_activity timestamptz)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM leadscore.model m WHERE m.name = scores_at.model) THEN
		PERFORM leadscore._check_read(scores_at.model);
	END IF;
	RETURN QUERY
	SELECT s.lead::text, e.* FROM leadscore._states_int4 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore._states_int8 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore._states_uuid s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead, e.* FROM leadscore._states_text s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model);
END
$$;

CREATE OR REPLACE FUNCTION leadscore.calibrate_rules(model text, query text, label text DEFAULT 'converted',
                                          threshold float8 DEFAULT NULL, target_rate float8 DEFAULT 0.5,
                                          lambda float8 DEFAULT 1, events_before text DEFAULT NULL)
	RETURNS TABLE (rule text, kind text, points float8, matches bigint, match_rate float8, converted bigint,
	               conversion_rate float8, baseline_rate float8, lift float8, points_difference float8,
	               coefficient float8, points_logistic float8)
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp
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
		-- The condition runs here as SQL, with the caller's rights: it must be one the caller could write.
		PERFORM leadscore._check_condition(r.source, r.condition, r.name, calibrate_rules.model);
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

--------------------------------------------------------------------------------------------------
-- Privileges: nothing of leadscore is PUBLIC's (but the schema's name). The CRM's roles need nothing of
-- leadscore to write their own tables (the live trigger works as the extension's owner); every other use
-- is granted by the DBA, most simply with leadscore.grant_profile.
--------------------------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA leadscore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA leadscore FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA leadscore FROM PUBLIC;

-- The objects each profile may use. reader: scores, history, snapshots, hottest leads, explain (of the
-- leads it sees in the CRM); admin: the configuration, tracking, resets, recompute, and what a reader
-- reads; scheduler: the scheduled functions; analyst: training, predictions, quality measures and what a
-- reader reads.
CREATE FUNCTION leadscore._profile_grants(profile text) RETURNS text[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	reader text[] := ARRAY[
		'SELECT ON leadscore.scores, leadscore.scores_int4, leadscore.scores_int8, leadscore.scores_uuid, '
		'leadscore.scores_text, leadscore.stage_changes, leadscore.score_snapshots, leadscore._states_int4, '
		'leadscore._states_int8, leadscore._states_uuid, leadscore._states_text, leadscore.model, leadscore.stage',
		'EXECUTE ON FUNCTION leadscore.scores_at, leadscore.explain, leadscore.top_leads, leadscore.stage_leads, '
		'leadscore._eval, leadscore._hottest, leadscore._may_read, leadscore._may_read_named, leadscore._check_read'];
BEGIN
	CASE profile
	WHEN 'reader' THEN
		RETURN reader;
	WHEN 'admin' THEN
		RETURN reader || ARRAY[
			'SELECT, INSERT, UPDATE, DELETE ON leadscore.model, leadscore.rule, leadscore.category, leadscore.stage, '
			'leadscore.grade_band, leadscore.inactivity_rule, leadscore.tracked_table',
			'SELECT ON leadscore.engagement_resets, leadscore.rfm, leadscore.rfm_refresh',
			'INSERT ON leadscore.engagement_reset_int4, leadscore.engagement_reset_int8, '
			'leadscore.engagement_reset_uuid, leadscore.engagement_reset_text',
			'EXECUTE ON ALL FUNCTIONS IN SCHEMA leadscore'];
	WHEN 'scheduler' THEN
		RETURN ARRAY['EXECUTE ON FUNCTION leadscore.advance_stages, leadscore.snapshot, leadscore.refresh_rfm'];
	WHEN 'analyst' THEN
		RETURN reader || ARRAY[
			'SELECT, INSERT, DELETE ON leadscore.predictive_model, leadscore.predictive_term',
			'SELECT ON leadscore.predictive_models, leadscore.coefficients',
			'SELECT ON leadscore.model, leadscore.rule, leadscore.tracked_table, leadscore.stage',
			'EXECUTE ON FUNCTION leadscore.train, leadscore.train_bayes, leadscore.predict, leadscore.predict_log_odds, '
			'leadscore.explain_prediction, leadscore.auc, leadscore._auc_trans, leadscore._auc_final, '
			'leadscore._auc_combine, leadscore._auc_serialize, leadscore._auc_deserialize, leadscore.lift, '
			'leadscore.calibration, leadscore.conversion_by_group, leadscore.conversion_by_stage, '
			'leadscore.calibrate_rules, leadscore._rule_stats, leadscore._check_condition, leadscore.activity, '
			'leadscore._activity_query'];
	ELSE
		RAISE EXCEPTION 'unknown profile "%"', profile USING ERRCODE = 'invalid_parameter_value',
			HINT = 'The profiles are reader, admin, scheduler and analyst.';
	END CASE;
END
$$;
COMMENT ON FUNCTION leadscore._profile_grants(text) IS 'internal: the privileges of a profile, as GRANT clauses';

-- Run by the extension's owner (or a role holding these privileges with grant option): grants or revokes
-- a profile. No role is created: roles are the cluster's, the DBA's to make.
CREATE FUNCTION leadscore.grant_profile(profile text, role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g text;
BEGIN
	IF profile IS NULL OR role IS NULL THEN
		RAISE EXCEPTION 'leadscore.grant_profile: arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	FOREACH g IN ARRAY leadscore._profile_grants(profile) LOOP
		EXECUTE format('GRANT %s TO %s', g, role);
	END LOOP;
END
$$;
COMMENT ON FUNCTION leadscore.grant_profile(text, regrole) IS
	'grants a role one of leadscore''s profiles: reader, admin, scheduler or analyst (see the README, Security)';

CREATE FUNCTION leadscore.revoke_profile(profile text, role regrole) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	g text;
BEGIN
	IF profile IS NULL OR role IS NULL THEN
		RAISE EXCEPTION 'leadscore.revoke_profile: arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	FOREACH g IN ARRAY leadscore._profile_grants(profile) LOOP
		EXECUTE format('REVOKE %s FROM %s', g, role);
	END LOOP;
END
$$;
COMMENT ON FUNCTION leadscore.revoke_profile(text, regrole) IS
	'revokes what grant_profile granted (privileges granted otherwise stay)';
REVOKE ALL ON FUNCTION leadscore._profile_grants(text), leadscore.grant_profile(text, regrole),
	leadscore.revoke_profile(text, regrole) FROM PUBLIC;
