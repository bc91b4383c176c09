-- leadscore 1.0: live lead scoring inside PostgreSQL.
\echo Use "CREATE EXTENSION leadscore" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Configuration: models, tracked tables, categories, rules, stages, grade bands. Plain tables,
-- edited with plain SQL and dumped by pg_dump.
--------------------------------------------------------------------------------------------------

CREATE TABLE leadscore.model (
	name text PRIMARY KEY,
	id int GENERATED ALWAYS AS IDENTITY UNIQUE,
	half_life interval,
	floor float8,
	ceiling float8,
	description text,
	CONSTRAINT "half_life must be positive" CHECK (half_life > interval '0'),
	CONSTRAINT "floor must not exceed ceiling" CHECK (floor <= ceiling),
	CONSTRAINT "floor and ceiling must be finite"
		CHECK (floor NOT IN ('Infinity', '-Infinity', 'NaN') AND ceiling NOT IN ('Infinity', '-Infinity', 'NaN'))
);
COMMENT ON TABLE leadscore.model IS
	'scoring models: engagement half-life (NULL: no decay), score floor and ceiling';

CREATE TABLE leadscore.tracked_table (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	relid regclass NOT NULL,
	role text NOT NULL CHECK (role IN ('lead', 'event')),
	lead_column name NOT NULL,
	time_column name,
	key_type regtype NOT NULL,
	PRIMARY KEY (model, relid)
);
CREATE UNIQUE INDEX tracked_table_one_lead_table ON leadscore.tracked_table (model) WHERE role = 'lead';
CREATE INDEX tracked_table_relid ON leadscore.tracked_table (relid);
COMMENT ON TABLE leadscore.tracked_table IS
	'tables a model tracks; written by track_leads, track_events and untrack';

CREATE TABLE leadscore.category (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	name text NOT NULL,
	weight float8 NOT NULL DEFAULT 1,
	cap float8,
	PRIMARY KEY (model, name),
	CONSTRAINT "category weight must be finite" CHECK (weight NOT IN ('Infinity', '-Infinity', 'NaN')),
	CONSTRAINT "category cap must be positive and finite" CHECK (cap > 0 AND cap < 'Infinity')
);
COMMENT ON TABLE leadscore.category IS
	'rule categories: score = sum of weight x capped category subtotal';

CREATE TABLE leadscore.rule (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	name text NOT NULL,
	source regclass NOT NULL,
	condition text NOT NULL,
	points float8 NOT NULL,
	cap float8,
	category text,
	once_per_lead boolean NOT NULL DEFAULT false,
	enabled boolean NOT NULL DEFAULT true,
	PRIMARY KEY (model, name),
	FOREIGN KEY (model, source) REFERENCES leadscore.tracked_table (model, relid)
		ON UPDATE CASCADE ON DELETE CASCADE,
	FOREIGN KEY (model, category) REFERENCES leadscore.category (model, name) ON UPDATE CASCADE
);
COMMENT ON TABLE leadscore.rule IS
	'scoring rules: a SQL condition over a tracked table, points (negative allowed), optional cap and category';

CREATE TABLE leadscore.stage (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	name text NOT NULL,
	min_score float8 NOT NULL,
	PRIMARY KEY (model, name),
	UNIQUE (model, min_score),
	CONSTRAINT "stage min_score must not be NaN or +Infinity" CHECK (min_score < 'Infinity')
);
COMMENT ON TABLE leadscore.stage IS
	'stages: a lead is in the stage with the highest min_score its score reaches';

CREATE TABLE leadscore.grade_band (
	model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	axis text NOT NULL CHECK (axis IN ('fit', 'engagement')),
	name text NOT NULL,
	min_score float8 NOT NULL,
	PRIMARY KEY (model, axis, name),
	UNIQUE (model, axis, min_score),
	CONSTRAINT "band min_score must not be NaN or +Infinity" CHECK (min_score < 'Infinity')
);
COMMENT ON TABLE leadscore.grade_band IS
	'fit bands (A, B, C) and engagement bands (1, 2, 3): the grade is their pair, such as A1';

SELECT pg_catalog.pg_extension_config_dump('leadscore.model', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.model_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.tracked_table', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.category', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.rule', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.stage', '');
SELECT pg_catalog.pg_extension_config_dump('leadscore.grade_band', '');

--------------------------------------------------------------------------------------------------
-- Per-lead state and stage history, one table per lead key type, keyed by the CRM's own key (so a
-- distributed deployment can co-locate them with the CRM's tables).
--------------------------------------------------------------------------------------------------

CREATE TYPE leadscore.score_result AS (
	score float8,
	fit float8,
	engagement float8,
	stage text,
	grade text,
	last_activity timestamptz
);
COMMENT ON TYPE leadscore.score_result IS 'a lead''s score, fit, engagement, stage and grade at a time';

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE TABLE leadscore.state_%1$s (
				model_id int NOT NULL,
				lead %1$s NOT NULL,
				has_lead boolean NOT NULL DEFAULT false,
				fit float8[],
				eng_n int8[],
				eng_w float8[],
				eng_first timestamptz[],
				eng_ref timestamptz,
				n_events int8 NOT NULL DEFAULT 0,
				last_activity timestamptz,
				stage text,
				PRIMARY KEY (model_id, lead)
			) WITH (fillfactor = 70)$f$, t);
		EXECUTE format($f$COMMENT ON TABLE leadscore.state_%1$s IS
			'internal: incremental scoring state of leads whose key is %1$s (derived: rebuilt by recompute)'$f$, t);
		EXECUTE format($f$
			CREATE TABLE leadscore.stage_change_%1$s (
				id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				model_id int NOT NULL,
				lead %1$s NOT NULL,
				from_stage text,
				to_stage text,
				score float8 NOT NULL,
				changed_at timestamptz NOT NULL
			)$f$, t);
		EXECUTE format('CREATE INDEX ON leadscore.stage_change_%1$s (model_id, lead, changed_at)', t);
		EXECUTE format($f$COMMENT ON TABLE leadscore.stage_change_%1$s IS
			'stage changes of leads whose key is %1$s'$f$, t);
		EXECUTE format($f$SELECT pg_catalog.pg_extension_config_dump('leadscore.stage_change_%1$s', '')$f$, t);
		EXECUTE format($f$SELECT pg_catalog.pg_extension_config_dump('leadscore.stage_change_%1$s_id_seq', '')$f$, t);
	END LOOP;
END
$$;

--------------------------------------------------------------------------------------------------
-- C functions
--------------------------------------------------------------------------------------------------

-- SECURITY DEFINER: the CRM's own roles write their tables; only leadscore writes its state.
CREATE FUNCTION leadscore._track_trigger() RETURNS trigger
	LANGUAGE c SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_track_trigger';
COMMENT ON FUNCTION leadscore._track_trigger() IS
	'internal: statement trigger on tracked tables that keeps scores current';

CREATE FUNCTION leadscore._check_rule() RETURNS trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_check_rule';
COMMENT ON FUNCTION leadscore._check_rule() IS 'internal: refuses a bad rule when it is written';

CREATE FUNCTION leadscore._invalidate() RETURNS void
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'leadscore_invalidate';
COMMENT ON FUNCTION leadscore._invalidate() IS
	'internal: makes every session reload the models (at once here, at commit elsewhere)';

CREATE FUNCTION leadscore.recompute(model text) RETURNS bigint
	LANGUAGE c VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_recompute';
COMMENT ON FUNCTION leadscore.recompute(text) IS
	'rebuilds a model''s scores from scratch from the tracked tables; returns the number of leads scored';

CREATE FUNCTION leadscore._eval(state record, as_of timestamptz) RETURNS leadscore.score_result
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'leadscore_eval';
COMMENT ON FUNCTION leadscore._eval(record, timestamptz) IS 'internal: score of a state row at a time';

CREATE FUNCTION leadscore.explain(model text, lead text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (rule text, kind text, category text, hits bigint, points float8, raw float8,
	               decayed float8, capped float8, weighted float8)
	LANGUAGE c STABLE STRICT ROWS 20
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_explain';
COMMENT ON FUNCTION leadscore.explain(text, text, timestamptz) IS
	'each rule''s contribution to a lead''s score: hits, points before and after decay and caps; weighted sums to fit + engagement';

CREATE FUNCTION leadscore._on_drop_extension() RETURNS event_trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_on_drop_extension';
COMMENT ON FUNCTION leadscore._on_drop_extension() IS
	'internal: removes leadscore''s triggers from the CRM''s tables before the extension goes';

CREATE EVENT TRIGGER leadscore_drop_extension ON ddl_command_start WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION leadscore._on_drop_extension();

--------------------------------------------------------------------------------------------------
-- Tracking
--------------------------------------------------------------------------------------------------

-- Creates or drops leadscore's triggers on a table so that they exist exactly while a model tracks it.
CREATE FUNCTION leadscore._sync_triggers(tbl regclass) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tracked boolean := EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.relid = tbl);
	present boolean := EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = 'leadscore_insert');
BEGIN
	IF NOT EXISTS (SELECT FROM pg_class WHERE oid = tbl) THEN
		RETURN;
	END IF;
	IF tracked AND NOT present THEN
		EXECUTE format('CREATE TRIGGER leadscore_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS leadscore_new '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()', tbl);
		EXECUTE format('CREATE TRIGGER leadscore_update AFTER UPDATE ON %s '
		               'REFERENCING OLD TABLE AS leadscore_old NEW TABLE AS leadscore_new '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()', tbl);
		EXECUTE format('CREATE TRIGGER leadscore_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS leadscore_old '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()', tbl);
		EXECUTE format('CREATE TRIGGER leadscore_truncate AFTER TRUNCATE ON %s '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()', tbl);
	ELSIF NOT tracked AND present THEN
		EXECUTE format('DROP TRIGGER leadscore_insert ON %s', tbl);
		EXECUTE format('DROP TRIGGER leadscore_update ON %s', tbl);
		EXECUTE format('DROP TRIGGER leadscore_delete ON %s', tbl);
		EXECUTE format('DROP TRIGGER leadscore_truncate ON %s', tbl);
	END IF;
END
$$;
COMMENT ON FUNCTION leadscore._sync_triggers(regclass) IS
	'internal: leadscore''s triggers exist on a table exactly while a model tracks it';

-- The lead key types leadscore keeps state for, and the state table suffix of each.
CREATE FUNCTION leadscore._key_suffix(t regtype) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE t WHEN 'integer'::regtype THEN 'int4' WHEN 'bigint'::regtype THEN 'int8'
	              WHEN 'uuid'::regtype THEN 'uuid' WHEN 'text'::regtype THEN 'text'
	              WHEN 'character varying'::regtype THEN 'text' END
$$;
COMMENT ON FUNCTION leadscore._key_suffix(regtype) IS
	'internal: state table suffix of a lead key type, NULL if the type is not supported';

CREATE FUNCTION leadscore._column_type(tbl regclass, col name) RETURNS regtype
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t regtype;
BEGIN
	SELECT a.atttypid INTO t FROM pg_attribute a
	 WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
	IF t IS NULL THEN
		RAISE EXCEPTION 'column "%" of table % does not exist', col, tbl USING ERRCODE = 'undefined_column';
	END IF;
	RETURN t;
END
$$;
COMMENT ON FUNCTION leadscore._column_type(regclass, name) IS 'internal: type of a table column, or an error';

CREATE FUNCTION leadscore._check_tracked() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
	lead_type regtype;
	half_life interval;
BEGIN
	SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = NEW.relid;
	IF kind IS NULL OR kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION 'model "%": % is not a table', NEW.model, NEW.relid USING ERRCODE = 'wrong_object_type';
	END IF;
	NEW.key_type := leadscore._column_type(NEW.relid, NEW.lead_column);
	IF leadscore._key_suffix(NEW.key_type) IS NULL THEN
		RAISE EXCEPTION 'model "%": column "%" of table % has type %', NEW.model, NEW.lead_column, NEW.relid, NEW.key_type
			USING ERRCODE = 'datatype_mismatch', HINT = 'A lead key must be integer, bigint, uuid or text.';
	END IF;
	IF NEW.role = 'lead' THEN
		IF NEW.time_column IS NOT NULL THEN
			RAISE EXCEPTION 'model "%": a lead table has no time column', NEW.model USING ERRCODE = 'invalid_parameter_value';
		END IF;
		RETURN NEW;
	END IF;
	SELECT t.key_type INTO lead_type FROM leadscore.tracked_table t WHERE t.model = NEW.model AND t.role = 'lead';
	IF lead_type IS NULL THEN
		RAISE EXCEPTION 'model "%" tracks no lead table', NEW.model USING ERRCODE = 'object_not_in_prerequisite_state',
			HINT = 'Call leadscore.track_leads first.';
	END IF;
	IF leadscore._key_suffix(lead_type) <> leadscore._key_suffix(NEW.key_type) THEN
		RAISE EXCEPTION 'model "%": column "%" of table % has type %, the lead key has type %',
			NEW.model, NEW.lead_column, NEW.relid, NEW.key_type, lead_type USING ERRCODE = 'datatype_mismatch';
	END IF;
	IF NEW.time_column IS NOT NULL THEN
		IF leadscore._column_type(NEW.relid, NEW.time_column)
		   NOT IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) THEN
			RAISE EXCEPTION 'model "%": time column "%" of table % must be timestamptz or timestamp',
				NEW.model, NEW.time_column, NEW.relid USING ERRCODE = 'datatype_mismatch';
		END IF;
	ELSE
		SELECT m.half_life INTO half_life FROM leadscore.model m WHERE m.name = NEW.model;
		IF half_life IS NOT NULL THEN
			RAISE EXCEPTION 'model "%" decays with time: event table % needs a time column', NEW.model, NEW.relid
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadscore._check_tracked() IS 'internal: refuses a bad tracked table';

CREATE TRIGGER check_tracked BEFORE INSERT OR UPDATE ON leadscore.tracked_table
	FOR EACH ROW EXECUTE FUNCTION leadscore._check_tracked();

CREATE FUNCTION leadscore.track_leads(model text, lead_table regclass, key_column name) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF model IS NULL OR lead_table IS NULL OR key_column IS NULL THEN
		RAISE EXCEPTION 'leadscore.track_leads: arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- No write to the table between its first scoring and its triggers.
	EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', lead_table);
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = track_leads.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	IF EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = track_leads.model AND t.role = 'lead') THEN
		RAISE EXCEPTION 'model "%" already tracks a lead table', model USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO leadscore.tracked_table (model, relid, role, lead_column, key_type)
	VALUES (model, lead_table, 'lead', key_column, 'text');
	PERFORM leadscore._sync_triggers(lead_table);
	-- Rows already in the table are scored now.
	PERFORM leadscore.recompute(model);
END
$$;
COMMENT ON FUNCTION leadscore.track_leads(text, regclass, name) IS
	'makes a model score the rows of a lead table, identified by its key column (integer, bigint, uuid or text)';

CREATE FUNCTION leadscore.track_events(model text, event_table regclass, lead_column name, time_column name DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF model IS NULL OR event_table IS NULL OR lead_column IS NULL THEN
		RAISE EXCEPTION 'leadscore.track_events: arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- No write to the table between its first scoring and its triggers.
	EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', event_table);
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = track_events.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	IF EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = track_events.model AND t.relid = event_table) THEN
		RAISE EXCEPTION 'model "%" already tracks table %', model, event_table USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO leadscore.tracked_table (model, relid, role, lead_column, time_column, key_type)
	VALUES (model, event_table, 'event', lead_column, time_column, 'text');
	PERFORM leadscore._sync_triggers(event_table);
	-- Rows already in the table are scored now.
	PERFORM leadscore.recompute(model);
END
$$;
COMMENT ON FUNCTION leadscore.track_events(text, regclass, name, name) IS
	'makes a model score the rows of an event table: lead_column names the lead, time_column (timestamptz) dates the event';

CREATE FUNCTION leadscore.untrack(model text, tbl regclass, "cascade" boolean DEFAULT false) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF model IS NULL OR tbl IS NULL OR "cascade" IS NULL THEN
		RAISE EXCEPTION 'leadscore.untrack: arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = untrack.model AND t.relid = tbl) THEN
		RAISE EXCEPTION 'model "%" does not track table %', model, tbl USING ERRCODE = 'undefined_object';
	END IF;
	SELECT count(*) INTO n FROM leadscore.rule r WHERE r.model = untrack.model AND r.source = tbl;
	IF n > 0 AND NOT "cascade" THEN
		RAISE EXCEPTION 'model "%" has % rule(s) on table %', model, n, tbl USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Delete those rules first, or pass cascade => true.';
	END IF;
	IF EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = untrack.model AND t.relid = tbl AND t.role = 'lead')
	   AND EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = untrack.model AND t.role = 'event') THEN
		RAISE EXCEPTION 'model "%" still tracks event tables', model USING ERRCODE = 'dependent_objects_still_exist',
			HINT = 'Untrack the event tables first.';
	END IF;
	DELETE FROM leadscore.tracked_table t WHERE t.model = untrack.model AND t.relid = tbl;
END
$$;
COMMENT ON FUNCTION leadscore.untrack(text, regclass, boolean) IS
	'stops a model tracking a table (with cascade, deleting its rules on that table); triggers go with the last model';

--------------------------------------------------------------------------------------------------
-- Reacting to configuration changes: every change takes effect for every lead in the same statement.
--------------------------------------------------------------------------------------------------

-- A model is live while leadscore's triggers are on all its tables. Not so while pg_restore loads the
-- configuration (the CRM's triggers come last, with the dump's post-data): nothing is recomputed or
-- recorded then; the restore ends with leadscore.recompute.
CREATE FUNCTION leadscore._is_live(model text) RETURNS boolean
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(bool_and(EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = 'leadscore_insert')),
	                false)
	  FROM leadscore.tracked_table t WHERE t.model = _is_live.model
$$;
COMMENT ON FUNCTION leadscore._is_live(text) IS 'internal: whether leadscore''s triggers are on all the model''s tables';

CREATE FUNCTION leadscore._config_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	models text[];
	m text;
BEGIN
	PERFORM leadscore._invalidate();
	IF TG_OP = 'INSERT' THEN
		SELECT array_agg(DISTINCT n.model) INTO models FROM leadscore_new n;
	ELSIF TG_OP = 'UPDATE' THEN
		SELECT array_agg(DISTINCT x.model) INTO models
		  FROM (SELECT model FROM leadscore_new UNION SELECT model FROM leadscore_old) x;
	ELSE
		SELECT array_agg(DISTINCT o.model) INTO models FROM leadscore_old o;
	END IF;
	FOREACH m IN ARRAY coalesce(models, '{}') LOOP
		IF leadscore._is_live(m) THEN
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._config_changed() IS
	'internal: reloads the models and recomputes the models whose configuration changed';

CREATE FUNCTION leadscore._tracking_changed() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t regclass;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		FOR t IN SELECT DISTINCT o.relid FROM leadscore_old o LOOP
			PERFORM leadscore._sync_triggers(t);
		END LOOP;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		FOR t IN SELECT DISTINCT n.relid FROM leadscore_new n LOOP
			PERFORM leadscore._sync_triggers(t);
		END LOOP;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._tracking_changed() IS 'internal: installs or removes triggers as tracking changes';

CREATE FUNCTION leadscore._model_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m record;
	t text;
BEGIN
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
COMMENT ON FUNCTION leadscore._model_changed() IS 'internal: recomputes changed models, drops the state of deleted ones';

CREATE TRIGGER model_update AFTER UPDATE ON leadscore.model REFERENCING OLD TABLE AS leadscore_old
	NEW TABLE AS leadscore_new FOR EACH STATEMENT EXECUTE FUNCTION leadscore._model_changed();
CREATE TRIGGER model_delete AFTER DELETE ON leadscore.model REFERENCING OLD TABLE AS leadscore_old
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._model_changed();

CREATE TRIGGER check_rule BEFORE INSERT OR UPDATE ON leadscore.rule
	FOR EACH ROW EXECUTE FUNCTION leadscore._check_rule();

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['tracked_table', 'category', 'rule', 'stage', 'grade_band'] LOOP
		EXECUTE format('CREATE TRIGGER %1$s_insert AFTER INSERT ON leadscore.%1$s REFERENCING NEW TABLE AS leadscore_new '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed()', t);
		EXECUTE format('CREATE TRIGGER %1$s_update AFTER UPDATE ON leadscore.%1$s '
		               'REFERENCING OLD TABLE AS leadscore_old NEW TABLE AS leadscore_new '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed()', t);
		EXECUTE format('CREATE TRIGGER %1$s_delete AFTER DELETE ON leadscore.%1$s REFERENCING OLD TABLE AS leadscore_old '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._config_changed()', t);
	END LOOP;
END
$$;

-- Triggers are installed by the track functions, not by a row of tracked_table: when pg_restore loads
-- tracked_table, the CRM's triggers come with the CRM's tables from the dump. They go with the last row.
CREATE TRIGGER a_tracked_table_update AFTER UPDATE ON leadscore.tracked_table
	REFERENCING OLD TABLE AS leadscore_old NEW TABLE AS leadscore_new
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._tracking_changed();
CREATE TRIGGER a_tracked_table_delete AFTER DELETE ON leadscore.tracked_table REFERENCING OLD TABLE AS leadscore_old
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._tracking_changed();

-- A dropped CRM table stops being tracked (its triggers went with it).
CREATE FUNCTION leadscore._on_sql_drop() RETURNS event_trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM leadscore.tracked_table t
	 USING pg_event_trigger_dropped_objects() d
	 WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND t.relid = d.objid;
END
$$;
COMMENT ON FUNCTION leadscore._on_sql_drop() IS 'internal: forgets tracked tables that are dropped';
CREATE EVENT TRIGGER leadscore_sql_drop ON sql_drop EXECUTE FUNCTION leadscore._on_sql_drop();

--------------------------------------------------------------------------------------------------
-- Reading scores
--------------------------------------------------------------------------------------------------

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE VIEW leadscore.scores_%1$s AS
			SELECT m.name AS model, s.lead, e.score, e.fit, e.engagement, e.stage, e.grade, e.last_activity
			  FROM leadscore.state_%1$s s
			  JOIN leadscore.model m ON m.id = s.model_id
			 CROSS JOIN LATERAL leadscore._eval(s, now()) e$f$, t);
		EXECUTE format($f$COMMENT ON VIEW leadscore.scores_%1$s IS
			'current score, fit, engagement, stage and grade of leads whose key is %1$s, one row per model and lead'$f$, t);
	END LOOP;
END
$$;

CREATE VIEW leadscore.scores AS
	SELECT model, lead::text AS lead, score, fit, engagement, stage, grade, last_activity FROM leadscore.scores_int4
	UNION ALL
	SELECT model, lead::text, score, fit, engagement, stage, grade, last_activity FROM leadscore.scores_int8
	UNION ALL
	SELECT model, lead::text, score, fit, engagement, stage, grade, last_activity FROM leadscore.scores_uuid
	UNION ALL
	SELECT model, lead, score, fit, engagement, stage, grade, last_activity FROM leadscore.scores_text;
COMMENT ON VIEW leadscore.scores IS
	'current score, fit, engagement, stage and grade of every lead of every model, the lead key as text';

CREATE VIEW leadscore.stage_changes AS
	SELECT c.id, m.name AS model, c.lead::text AS lead, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_int4 c JOIN leadscore.model m ON m.id = c.model_id
	UNION ALL
	SELECT c.id, m.name, c.lead::text, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_int8 c JOIN leadscore.model m ON m.id = c.model_id
	UNION ALL
	SELECT c.id, m.name, c.lead::text, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_uuid c JOIN leadscore.model m ON m.id = c.model_id
	UNION ALL
	SELECT c.id, m.name, c.lead, c.from_stage, c.to_stage, c.score, c.changed_at
	  FROM leadscore.stage_change_text c JOIN leadscore.model m ON m.id = c.model_id;
COMMENT ON VIEW leadscore.stage_changes IS
	'every recorded stage change (model, lead, from, to, score, time); also sent on NOTIFY channel leadscore_stage';

CREATE FUNCTION leadscore.scores_at(model text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, stage text, grade text,
	               last_activity timestamptz)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.lead::text, e.* FROM leadscore.state_int4 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore.state_int8 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore.state_uuid s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead, e.* FROM leadscore.state_text s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.id FROM leadscore.model m WHERE m.name = scores_at.model)
$$;
COMMENT ON FUNCTION leadscore.scores_at(text, timestamptz) IS
	'every lead''s score, fit, engagement, stage and grade in a model at any time (exact decay)';

--------------------------------------------------------------------------------------------------
-- Privileges: anyone may read models, rules and scores; only their owner (a superuser) or roles it
-- grants may change the configuration. The CRM's roles need nothing more to write their own tables.
--------------------------------------------------------------------------------------------------

GRANT USAGE ON SCHEMA leadscore TO PUBLIC;
GRANT SELECT ON ALL TABLES IN SCHEMA leadscore TO PUBLIC;
REVOKE EXECUTE ON FUNCTION leadscore.recompute(text) FROM PUBLIC;
