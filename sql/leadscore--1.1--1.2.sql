-- leadscore 1.1 -> 1.2: per-period frequency caps, engagement resets, recency/frequency/volume and RFM
-- segments, hottest leads from an index.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.2'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Frequency caps per period (rule.max_per_period, rule.period)
--------------------------------------------------------------------------------------------------

-- In each period of fixed length (buckets counted in UTC from Monday 2000-01-03 00:00, so '1 day' is a UTC
-- day and '7 days' an ISO week), only the lead's earliest max_per_period matching events count. Event rules
-- on a table with a time column only, not with once_per_lead (checked by _check_rule).
ALTER TABLE leadscore.rule ADD COLUMN max_per_period integer, ADD COLUMN period interval;
ALTER TABLE leadscore.rule
	ADD CONSTRAINT "max_per_period must be positive" CHECK (max_per_period > 0),
	ADD CONSTRAINT "max_per_period and period go together" CHECK ((max_per_period IS NULL) = (period IS NULL)),
	ADD CONSTRAINT "period must be positive" CHECK (period > interval '0'),
	ADD CONSTRAINT "period must not count months or years (fixed length)"
		CHECK (extract(year FROM period) = 0 AND extract(month FROM period) = 0);
COMMENT ON COLUMN leadscore.rule.max_per_period IS
	'event rules: at most this many matching events count per lead and period (the earliest of each period)';
COMMENT ON COLUMN leadscore.rule.period IS
	'the period of max_per_period: fixed length, counted in UTC from Monday 2000-01-03 (''1 day'': UTC days, ''7 days'': ISO weeks)';

-- (end of frequency caps)

--------------------------------------------------------------------------------------------------
-- Engagement resets
--------------------------------------------------------------------------------------------------

-- A reset of a lead's engagement for a model from reset_at on (a deal lost...): timed events before the
-- reset that applies at a time t (the latest reset_at <= t) count in no rule at t; they remain activity.
-- History, one table per lead key type like stage_change_<suffix> (co-located with the lead's state):
-- not derived data, dumped by pg_dump. Inserting or deleting a row rebuilds that lead's state for that
-- model in the same transaction (_reset_changed), recording a stage change as an event would.
CREATE FUNCTION leadscore._reset_changed() RETURNS trigger
	LANGUAGE c SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_reset_changed';
COMMENT ON FUNCTION leadscore._reset_changed() IS
	'internal: rebuilds a lead''s state when one of its engagement resets is recorded, changed or deleted';

-- TRUNCATE of a history table: the live models with that key type are recomputed.
CREATE FUNCTION leadscore._resets_truncated() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text;
BEGIN
	FOR m IN SELECT t.model FROM leadscore.tracked_table t
	          WHERE t.role = 'lead' AND leadscore._key_suffix(t.key_type) = TG_ARGV[0] ORDER BY 1 LOOP
		IF leadscore._is_live(m) THEN
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._resets_truncated() IS
	'internal: recomputes the models whose engagement resets were truncated';

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE TABLE leadscore.engagement_reset_%1$s (
				id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				model_id int NOT NULL,
				lead %1$s NOT NULL,
				reset_at timestamptz NOT NULL,
				reason text,
				recorded_at timestamptz NOT NULL DEFAULT now(),
				recorded_by name NOT NULL DEFAULT current_user,
				CONSTRAINT "reset_at must be finite" CHECK (reset_at > '-infinity' AND reset_at < 'infinity')
			)$f$, t);
		EXECUTE format('CREATE INDEX ON leadscore.engagement_reset_%1$s (model_id, lead, reset_at)', t);
		EXECUTE format($f$COMMENT ON TABLE leadscore.engagement_reset_%1$s IS
			'engagement resets of leads whose key is %1$s: from reset_at on, earlier events score in no rule (see leadscore.reset)'$f$, t);
		EXECUTE format($f$SELECT pg_catalog.pg_extension_config_dump('leadscore.engagement_reset_%1$s', '')$f$, t);
		EXECUTE format($f$SELECT pg_catalog.pg_extension_config_dump('leadscore.engagement_reset_%1$s_id_seq', '')$f$, t);
		EXECUTE format('GRANT SELECT ON leadscore.engagement_reset_%1$s TO PUBLIC', t);
		EXECUTE format('CREATE TRIGGER reset_changed AFTER INSERT OR UPDATE OR DELETE ON leadscore.engagement_reset_%1$s '
		               'FOR EACH ROW EXECUTE FUNCTION leadscore._reset_changed()', t);
		EXECUTE format('CREATE TRIGGER resets_truncated AFTER TRUNCATE ON leadscore.engagement_reset_%1$s '
		               'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._resets_truncated(%1$L)', t);
	END LOOP;
END
$$;

CREATE VIEW leadscore.engagement_resets AS
	SELECT r.id, m.name AS model, r.lead::text AS lead, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_int4 r JOIN leadscore.model m ON m.id = r.model_id
	UNION ALL
	SELECT r.id, m.name, r.lead::text, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_int8 r JOIN leadscore.model m ON m.id = r.model_id
	UNION ALL
	SELECT r.id, m.name, r.lead::text, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_uuid r JOIN leadscore.model m ON m.id = r.model_id
	UNION ALL
	SELECT r.id, m.name, r.lead, r.reset_at, r.reason, r.recorded_at, r.recorded_by
	  FROM leadscore.engagement_reset_text r JOIN leadscore.model m ON m.id = r.model_id;
COMMENT ON VIEW leadscore.engagement_resets IS
	'every recorded engagement reset (model, lead as text, reset_at, reason, who and when)';
GRANT SELECT ON leadscore.engagement_resets TO PUBLIC;

CREATE FUNCTION leadscore.reset(model text, lead text, at timestamptz DEFAULT now(), reason text DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	model_id int;
	key_type regtype;
	key_value text;
BEGIN
	IF model IS NULL OR lead IS NULL OR at IS NULL THEN
		RAISE EXCEPTION 'leadscore.reset: model, lead and at must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT m.id INTO model_id FROM leadscore.model m WHERE m.name = reset.model;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	SELECT t.key_type INTO key_type FROM leadscore.tracked_table t WHERE t.model = reset.model AND t.role = 'lead';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" tracks no lead table', model USING ERRCODE = 'object_not_in_prerequisite_state',
			HINT = 'Call leadscore.track_leads first.';
	END IF;
	IF at > now() THEN
		RAISE EXCEPTION 'a reset cannot be in the future' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('%s is later than the transaction''s time, %s.', at, now());
	END IF;
	IF NOT isfinite(at) THEN
		RAISE EXCEPTION 'a reset must be at a finite time' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		EXECUTE format('SELECT %L::%s::text', lead, key_type) INTO key_value;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'model "%": "%" is not a lead key of type %', model, lead, key_type
			USING ERRCODE = 'invalid_text_representation';
	END;
	EXECUTE format('INSERT INTO leadscore.engagement_reset_%s (model_id, lead, reset_at, reason) '
	               'VALUES ($1, $2::%s, $3, $4)', leadscore._key_suffix(key_type), key_type)
		USING model_id, key_value, at, reason;
END
$$;
COMMENT ON FUNCTION leadscore.reset(text, text, timestamptz, text) IS
	'resets a lead''s engagement for a model from `at` (default now, never later): earlier events no longer score; recorded in engagement_resets';

-- (end of resets)

--------------------------------------------------------------------------------------------------
-- Recency, frequency, volume and RFM segments
--------------------------------------------------------------------------------------------------

-- activity() reads a model's tracked tables with one aggregate: last activity, events, events in a
-- period and the sum of a numeric column over them. refresh_rfm() turns them into quintile codes in
-- leadscore.rfm_<key type> (keyed by the CRM's own key, like the state tables), writing only the rows
-- that change, so that another model tracking that table as an event table scores the segments live.

-- SQL of a model's activity per lead key (in the key's own type): columns (lead, last_activity, events,
-- events_in_period, volume), parameters $1 = as_of, $2 = the start of the period (excluded). NULL when
-- the model tracks no table.
CREATE FUNCTION leadscore._activity_query(model text, period interval, volume_column name, as_of timestamptz)
	RETURNS text
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	suffix text;
	t record;
	parts text[] := '{}';
	at_expr text;
	vol text;
	vtype regtype;
	btype regtype;
	kind "char";
	found_volume boolean := false;
BEGIN
	IF model IS NULL OR period IS NULL OR as_of IS NULL THEN
		RAISE EXCEPTION 'model, period and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = _activity_query.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	IF period <= interval '0' THEN
		RAISE EXCEPTION 'period must be positive, not %', period USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT isfinite(as_of) THEN
		RAISE EXCEPTION 'as_of must be finite, not %', as_of USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- The lead table's key type (event tables have the same; they outlive a dropped lead table).
	SELECT leadscore._key_suffix(tt.key_type) INTO suffix
	  FROM leadscore.tracked_table tt WHERE tt.model = _activity_query.model ORDER BY tt.role = 'lead' DESC LIMIT 1;
	IF suffix IS NULL THEN
		IF volume_column IS NOT NULL THEN
			RAISE EXCEPTION 'model "%": no event table has a column "%"', model, volume_column USING ERRCODE = 'undefined_column';
		END IF;
		RETURN NULL;
	END IF;
	FOR t IN SELECT tt.relid, tt.role, tt.lead_column, tt.time_column, c.relkind
	           FROM leadscore.tracked_table tt JOIN pg_class c ON c.oid = tt.relid
	          WHERE tt.model = _activity_query.model ORDER BY tt.role DESC, tt.relid LOOP
		IF t.role = 'lead' THEN
			parts := parts || format('SELECT l.%1$I::%2$s, NULL::timestamptz, NULL::float8, false FROM %3$s%4$s l '
			                         'WHERE l.%1$I IS NOT NULL',
			                         t.lead_column, suffix, CASE WHEN t.relkind = 'p' THEN '' ELSE 'ONLY ' END, t.relid);
			CONTINUE;
		END IF;
		-- Timed events as the scores see them: a NULL or infinite time is no event; a timestamp is read as UTC.
		IF t.time_column IS NULL THEN
			at_expr := 'NULL::timestamptz';
		ELSIF leadscore._column_type(t.relid, t.time_column) = 'timestamp without time zone'::regtype THEN
			at_expr := format('(e.%I AT TIME ZONE ''UTC'')', t.time_column);
		ELSE
			at_expr := format('e.%I', t.time_column);
		END IF;
		vol := 'NULL::float8';
		IF volume_column IS NOT NULL THEN
			SELECT a.atttypid::regtype INTO vtype FROM pg_attribute a
			 WHERE a.attrelid = t.relid AND a.attname = volume_column AND a.attnum > 0 AND NOT a.attisdropped;
			IF FOUND THEN
				btype := vtype;
				LOOP   -- a domain counts as its base type
					SELECT y.typtype INTO kind FROM pg_type y WHERE y.oid = btype;
					EXIT WHEN kind <> 'd';
					SELECT y.typbasetype INTO btype FROM pg_type y WHERE y.oid = btype;
				END LOOP;
				IF btype NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'float4'::regtype, 'float8'::regtype,
				                 'numeric'::regtype) THEN
					RAISE EXCEPTION 'model "%": column "%" of table % has type %, not a number', model, volume_column, t.relid, vtype
						USING ERRCODE = 'datatype_mismatch',
						      HINT = 'The volume column must be smallint, integer, bigint, real, double precision or numeric.';
				END IF;
				vol := format('e.%I::float8', volume_column);
				found_volume := true;
			END IF;
		END IF;
		parts := parts || format('SELECT e.%1$I::%2$s, %3$s, %4$s, true FROM %5$s%6$s e WHERE e.%1$I IS NOT NULL%7$s',
		                         t.lead_column, suffix, at_expr, vol, CASE WHEN t.relkind = 'p' THEN '' ELSE 'ONLY ' END,
		                         t.relid, CASE WHEN t.time_column IS NULL THEN '' ELSE format(' AND isfinite(e.%I)', t.time_column) END);
	END LOOP;
	IF volume_column IS NOT NULL AND NOT found_volume THEN
		RAISE EXCEPTION 'model "%": no event table has a column "%"', model, volume_column USING ERRCODE = 'undefined_column';
	END IF;
	RETURN format('SELECT x.lead, max(x.at) FILTER (WHERE x.at <= $1) AS last_activity, '
	              'count(*) FILTER (WHERE x.event AND (x.at IS NULL OR x.at <= $1)) AS events, '
	              'count(*) FILTER (WHERE x.at > $2 AND x.at <= $1) AS events_in_period, %s AS volume '
	              'FROM (%s) AS x (lead, at, volume, event) GROUP BY x.lead',
	              CASE WHEN volume_column IS NULL THEN 'NULL::float8'
	                   ELSE 'coalesce(sum(x.volume) FILTER (WHERE x.at > $2 AND x.at <= $1), 0)' END,
	              array_to_string(parts, ' UNION ALL '));
END
$$;
COMMENT ON FUNCTION leadscore._activity_query(text, interval, name, timestamptz) IS
	'internal: the SQL of a model''s recency, frequency and volume per lead key, after checking the arguments';

CREATE FUNCTION leadscore.activity(model text, period interval DEFAULT '90 days', volume_column name DEFAULT NULL,
                                   as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, last_activity timestamptz, recency interval, events bigint, events_in_period bigint,
	               volume float8)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q text;
BEGIN
	q := leadscore._activity_query(model, period, volume_column, as_of);
	IF q IS NOT NULL THEN
		RETURN QUERY EXECUTE format('SELECT a.lead::text, a.last_activity, $1 - a.last_activity, a.events, '
		                            'a.events_in_period, a.volume FROM (%s) a', q)
			USING as_of, as_of - period;
	END IF;
END
$$;
COMMENT ON FUNCTION leadscore.activity(text, interval, name, timestamptz) IS
	'recency, frequency and volume of every lead of a model at as_of: last activity, its age, events so far, events in (as_of - period, as_of], sum of volume_column over those (event tables that have it)';

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		-- (lead, model): the live trigger of a model tracking this table reads a lead's rows by lead.
		EXECUTE format($f$
			CREATE TABLE leadscore.rfm_%1$s (
				model text NOT NULL REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
				lead %1$s NOT NULL,
				last_activity timestamptz,
				frequency bigint NOT NULL,
				volume float8,
				r smallint NOT NULL,
				f smallint NOT NULL,
				m smallint,
				code text NOT NULL,
				PRIMARY KEY (lead, model)
			)$f$, t);
		EXECUTE format($f$COMMENT ON TABLE leadscore.rfm_%1$s IS
			'RFM segments of leads whose key is %1$s, per model, written by refresh_rfm (derived: not dumped; a model may track it as an event table)'$f$, t);
	END LOOP;
END
$$;

CREATE TABLE leadscore.rfm_refresh (
	model text PRIMARY KEY REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	period interval NOT NULL,
	volume_column name,
	as_of timestamptz NOT NULL,
	refreshed_at timestamptz NOT NULL,
	leads bigint,
	changed bigint
);
COMMENT ON TABLE leadscore.rfm_refresh IS
	'the latest refresh_rfm of each model: its arguments, when it ran, leads segmented and rows written (derived: not dumped)';

CREATE VIEW leadscore.rfm AS
	SELECT r.model, r.lead::text AS lead, x.as_of, r.last_activity, x.as_of - r.last_activity AS recency, r.frequency,
	       r.volume, r.r, r.f, r.m, r.code
	  FROM leadscore.rfm_int4 r JOIN leadscore.rfm_refresh x ON x.model = r.model
	UNION ALL
	SELECT r.model, r.lead::text, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_int8 r JOIN leadscore.rfm_refresh x ON x.model = r.model
	UNION ALL
	SELECT r.model, r.lead::text, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_uuid r JOIN leadscore.rfm_refresh x ON x.model = r.model
	UNION ALL
	SELECT r.model, r.lead, x.as_of, r.last_activity, x.as_of - r.last_activity, r.frequency, r.volume, r.r, r.f,
	       r.m, r.code
	  FROM leadscore.rfm_text r JOIN leadscore.rfm_refresh x ON x.model = r.model;
COMMENT ON VIEW leadscore.rfm IS
	'RFM segments of every lead of every refreshed model, the lead key as text: recency at the refresh''s as_of, frequency and volume over its period, quintiles r, f, m and their code (''555'' best)';

CREATE FUNCTION leadscore.refresh_rfm(model text, period interval DEFAULT '90 days', volume_column name DEFAULT NULL,
                                      as_of timestamptz DEFAULT now())
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	q text;
	suffix text;
	t text;
	healed text[] := '{}';
	m text;
	n bigint;
	n_leads bigint := 0;
	n_changed bigint := 0;
BEGIN
	q := leadscore._activity_query(model, period, volume_column, as_of);
	SELECT leadscore._key_suffix(tt.key_type) INTO suffix
	  FROM leadscore.tracked_table tt WHERE tt.model = refresh_rfm.model ORDER BY tt.role = 'lead' DESC LIMIT 1;
	-- One refresh of a model at a time: another waits here, then reads the rows this one wrote.
	INSERT INTO leadscore.rfm_refresh AS x (model, period, volume_column, as_of, refreshed_at)
	VALUES (refresh_rfm.model, period, volume_column, as_of, now())
	ON CONFLICT ON CONSTRAINT rfm_refresh_pkey DO UPDATE
	   SET period = excluded.period, volume_column = excluded.volume_column, as_of = excluded.as_of,
	       refreshed_at = excluded.refreshed_at, leads = NULL, changed = NULL;
	-- pg_dump leaves out the triggers of an extension's tables: after a restore, the models tracking an
	-- RFM table get their triggers back here, and a recompute once the rows are written.
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		IF EXISTS (SELECT FROM leadscore.tracked_table tt WHERE tt.relid = format('leadscore.rfm_%s', t)::regclass)
		   AND NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = format('leadscore.rfm_%s', t)::regclass
		                                             AND g.tgname = 'leadscore_insert') THEN
			PERFORM leadscore._sync_triggers(format('leadscore.rfm_%s', t)::regclass);
			healed := healed || ARRAY(SELECT tt.model FROM leadscore.tracked_table tt
			                           WHERE tt.relid = format('leadscore.rfm_%s', t)::regclass);
		END IF;
	END LOOP;
	-- The model's rows under another key type (its lead table changed) go.
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		IF t IS DISTINCT FROM suffix THEN
			EXECUTE format('DELETE FROM leadscore.rfm_%s r WHERE r.model = $1', t) USING model;
			GET DIAGNOSTICS n = ROW_COUNT;
			n_changed := n_changed + n;
		END IF;
	END LOOP;
	IF q IS NOT NULL THEN
		-- Quintiles by mid-rank, so that equal values share a quintile: floor(5 x (leads below + half the
		-- leads equal) / leads) + 1, among the leads with a last activity (r) or with events in the period
		-- (f, m); the others get 1. Then only the rows that change are written, from one join of the old
		-- rows and the new (a scan of the table per new row would see it grow as the insert fills it).
		EXECUTE format($q$
			WITH a AS (%1$s),
			q AS (
				SELECT a.lead, a.last_activity, a.events_in_period AS frequency, a.volume,
				       (CASE WHEN a.last_activity IS NULL THEN 1
				             ELSE 5 * (rank() OVER wr + count(*) OVER wr - 1) / (2 * count(*) OVER wrn) + 1 END)::smallint AS r,
				       (CASE WHEN a.events_in_period = 0 THEN 1
				             ELSE 5 * (rank() OVER wf + count(*) OVER wf - 1) / (2 * count(*) OVER wfn) + 1 END)::smallint AS f,
				       %2$s AS m
				  FROM a
				WINDOW wr AS (PARTITION BY a.last_activity IS NULL ORDER BY a.last_activity),
				       wrn AS (PARTITION BY a.last_activity IS NULL),
				       wf AS (PARTITION BY a.events_in_period = 0 ORDER BY a.events_in_period),
				       wfn AS (PARTITION BY a.events_in_period = 0)%3$s),
			c AS (SELECT q.*, q.r::text || q.f::text || coalesce(q.m::text, '') AS code FROM q),
			o AS MATERIALIZED (
				SELECT c.*, t.lead AS old_lead,
				       (t.last_activity, t.frequency, t.volume, t.r, t.f, t.m, t.code)
				       IS DISTINCT FROM (c.last_activity, c.frequency, c.volume, c.r, c.f, c.m, c.code) AS differs
				  FROM c FULL JOIN (SELECT * FROM leadscore.rfm_%4$s x WHERE x.model = $3) t ON t.lead = c.lead),
			d AS (DELETE FROM leadscore.rfm_%4$s t USING o
			       WHERE o.lead IS NULL AND t.model = $3 AND t.lead = o.old_lead RETURNING 1),
			u AS (UPDATE leadscore.rfm_%4$s t
			         SET last_activity = o.last_activity, frequency = o.frequency, volume = o.volume, r = o.r, f = o.f,
			             m = o.m, code = o.code
			        FROM o
			       WHERE o.lead IS NOT NULL AND o.old_lead IS NOT NULL AND o.differs AND t.model = $3 AND t.lead = o.lead
			      RETURNING 1),
			i AS (INSERT INTO leadscore.rfm_%4$s (model, lead, last_activity, frequency, volume, r, f, m, code)
			      SELECT $3, o.lead, o.last_activity, o.frequency, o.volume, o.r, o.f, o.m, o.code FROM o
			       WHERE o.old_lead IS NULL
			      RETURNING 1)
			SELECT (SELECT count(*) FROM o WHERE o.lead IS NOT NULL),
			       (SELECT count(*) FROM d) + (SELECT count(*) FROM u) + (SELECT count(*) FROM i)$q$,
			q,
			CASE WHEN volume_column IS NULL THEN 'NULL::smallint'
			     ELSE '(CASE WHEN a.events_in_period = 0 THEN 1 '
			          'ELSE 5 * (rank() OVER wm + count(*) OVER wm - 1) / (2 * count(*) OVER wfn) + 1 END)::smallint' END,
			CASE WHEN volume_column IS NULL THEN ''
			     ELSE ', wm AS (PARTITION BY a.events_in_period = 0 ORDER BY a.volume)' END,
			suffix)
			INTO n_leads, n
			USING as_of, as_of - period, model;
		n_changed := n_changed + n;
	END IF;
	FOREACH m IN ARRAY ARRAY(SELECT DISTINCT h FROM unnest(healed) h ORDER BY 1) LOOP
		IF leadscore._is_live(m) THEN
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	UPDATE leadscore.rfm_refresh x SET leads = n_leads, changed = n_changed
	 WHERE x.model = refresh_rfm.model;
	RETURN n_changed;
END
$$;
COMMENT ON FUNCTION leadscore.refresh_rfm(text, interval, name, timestamptz) IS
	'segments a model''s leads into RFM quintiles (r: recency, f: events in the period, m: sum of volume_column over them; 5 best) in leadscore.rfm_<key type>, writing only the rows that change; returns how many rows it inserted, updated or deleted';
REVOKE ALL ON FUNCTION leadscore.refresh_rfm(text, interval, name, timestamptz) FROM PUBLIC;

-- Not readable by PUBLIC, unlike the scores: volume sums a column of the CRM's tables (order amounts...)
-- that not every role may read. The owner grants SELECT on leadscore.rfm (or the tables) to whom it may.
REVOKE ALL ON leadscore.rfm_int4, leadscore.rfm_int8, leadscore.rfm_uuid, leadscore.rfm_text, leadscore.rfm_refresh,
	leadscore.rfm FROM PUBLIC;

-- The score views show how many events a lead has (all of them, whatever their time).
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE OR REPLACE VIEW leadscore.scores_%1$s AS
			SELECT m.name AS model, s.lead, e.score, e.fit, e.engagement, e.stage, e.grade, e.last_activity,
			       s.n_events AS events
			  FROM leadscore.state_%1$s s
			  JOIN leadscore.model m ON m.id = s.model_id
			 CROSS JOIN LATERAL leadscore._eval(s, now()) e$f$, t);
		EXECUTE format($f$COMMENT ON VIEW leadscore.scores_%1$s IS
			'current score, fit, engagement, stage and grade, last activity and number of events of leads whose key is %1$s, one row per model and lead'$f$, t);
	END LOOP;
END
$$;

CREATE OR REPLACE VIEW leadscore.scores AS
	SELECT model, lead::text AS lead, score, fit, engagement, stage, grade, last_activity, events FROM leadscore.scores_int4
	UNION ALL
	SELECT model, lead::text, score, fit, engagement, stage, grade, last_activity, events FROM leadscore.scores_int8
	UNION ALL
	SELECT model, lead::text, score, fit, engagement, stage, grade, last_activity, events FROM leadscore.scores_uuid
	UNION ALL
	SELECT model, lead, score, fit, engagement, stage, grade, last_activity, events FROM leadscore.scores_text;
COMMENT ON VIEW leadscore.scores IS
	'current score, fit, engagement, stage and grade, last activity and number of events of every lead of every model, the lead key as text';

-- (end of RFM)

--------------------------------------------------------------------------------------------------
-- Hottest leads from an index
--------------------------------------------------------------------------------------------------

-- Two time-free keys per state row bound its score at any time t: score(t) <= hot_fit +
-- 2^(hot_key - t / half_life) (see src/core/hot.h). leadscore.top_leads reads the rows of a model in
-- decreasing hot_fit and decreasing hot_key at once and stops as soon as no unread row can beat the N-th
-- best exact score. The keys are kept for the models that ask for it (model.hot_index): they cost two
-- index entries at every change of a lead's state. The state rows also carry the engagement reset in
-- force when they were written.
ALTER TABLE leadscore.model ADD COLUMN hot_index boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN leadscore.model.hot_index IS
	'keep the keys that let top_leads and stage_leads read the best leads from an index (two index entries more per change)';

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format('ALTER TABLE leadscore.state_%s ADD COLUMN reset_at timestamptz, '
		               'ADD COLUMN hot_fit float8, ADD COLUMN hot_key float8', t);
		EXECUTE format('CREATE INDEX state_%1$s_hot_fit ON leadscore.state_%1$s (model_id, hot_fit DESC) '
		               'WHERE hot_key IS NOT NULL', t);
		EXECUTE format('CREATE INDEX state_%1$s_hot_key ON leadscore.state_%1$s (model_id, hot_key DESC) '
		               'WHERE hot_key IS NOT NULL', t);
		EXECUTE format($c$COMMENT ON COLUMN leadscore.state_%s.reset_at IS
			'internal: the engagement reset in force when the row was written (see leadscore.reset)'$c$, t);
		EXECUTE format($c$COMMENT ON COLUMN leadscore.state_%s.hot_fit IS
			'internal: score bound, time-free part (models with hot_index; else NULL)'$c$, t);
		EXECUTE format($c$COMMENT ON COLUMN leadscore.state_%s.hot_key IS
			'internal: score bound, log2 of the engagement part at time 0 in half-lives (hottest leads)'$c$, t);
	END LOOP;
END
$$;

CREATE FUNCTION leadscore._hottest(model text, n bigint, min_score float8, as_of timestamptz)
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, stage text, grade text,
	               last_activity timestamptz)
	AS 'MODULE_PATHNAME', 'leadscore_hottest' LANGUAGE C STABLE
	-- Its two cursors read a few rows each in index order, not a sorted copy of the table; compiling
	-- them (JIT, planned for a million rows) would cost more than reading them.
	SET cursor_tuple_fraction = 0.0001 SET jit = off;

CREATE FUNCTION leadscore.top_leads(model text, n bigint DEFAULT 100, as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, stage text, grade text,
	               last_activity timestamptz)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM leadscore._hottest(top_leads.model, top_leads.n, NULL, top_leads.as_of)
$$;
COMMENT ON FUNCTION leadscore.top_leads(text, bigint, timestamptz) IS
	'the n leads of a model with the highest score at as_of (exact decay), best first, read from an index';

CREATE FUNCTION leadscore.stage_leads(model text, stage text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, grade text, last_activity timestamptz)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lowest float8;
BEGIN
	IF stage_leads.model IS NULL OR stage_leads.stage IS NULL OR stage_leads.as_of IS NULL THEN
		RAISE EXCEPTION 'model, stage and as_of must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = stage_leads.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', stage_leads.model USING ERRCODE = 'undefined_object';
	END IF;
	SELECT s.min_score INTO lowest FROM leadscore.stage s
	 WHERE s.model = stage_leads.model AND s.name = stage_leads.stage;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" has no stage "%"', stage_leads.model, stage_leads.stage
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN QUERY SELECT h.lead, h.score, h.fit, h.engagement, h.grade, h.last_activity
	               FROM leadscore._hottest(stage_leads.model, NULL, lowest, stage_leads.as_of) h
	              WHERE h.stage = stage_leads.stage;
END
$$;
COMMENT ON FUNCTION leadscore.stage_leads(text, text, timestamptz) IS
	'the leads of a model in a stage at as_of (exact decay), best first: reads the leads whose score may reach the stage from an index';

-- A new model is known at once (to top_leads, explain...), before it tracks any table.
CREATE TRIGGER model_insert AFTER INSERT ON leadscore.model
	FOR EACH STATEMENT EXECUTE FUNCTION leadscore._check_config();

-- (end of hottest leads)
