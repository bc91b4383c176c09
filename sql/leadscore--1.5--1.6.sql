-- leadscore 1.5 -> 1.6: one source of truth for rule validation. The checks of a rule that read the row
-- alone are CHECK constraints of leadscore.rule, as those of the other configuration tables already were;
-- the trigger leadscore._check_rule keeps the checks that read other tables (the model, the tracked
-- table, the category, the trained model; the condition, compiled as its author); ModelSpec::validate in
-- the library checks what only the whole model shows (names unique across rules and categories, bands).
-- The library gives the same answer as the constraints for every value. No row changes: every existing
-- rule already passed the same checks in the trigger.
-- Views for SQL and BI tools: typed views of the history for every lead key type (stage_changes_<key>,
-- engagement_resets_<key>, rfm_segments_<key>, score_snapshots_<key>: the lead of its own type, joinable to
-- the CRM's lead table without a cast), a stage's rank (stage_rank; from_rank and to_rank in the stage
-- changes) appended to the score, snapshot and history views and to conversion_by_stage, and a comment on
-- every column of the views and configuration tables. No row changes; the roles that may read a view over
-- every key type are granted its typed views. Stage hysteresis: leadscore.model.stage_exit_margin and
-- stage_min_time (the instant each lead entered its stage: state_<key>.stage_since, from the history).
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.6'" to load this file. \quit

ALTER TABLE leadscore.rule
	ADD CONSTRAINT "points must be finite" CHECK (points NOT IN ('Infinity', '-Infinity', 'NaN')),
	ADD CONSTRAINT "cap must be positive and finite" CHECK (cap > 0 AND cap < 'Infinity'),
	ADD CONSTRAINT "a cap per period and once_per_lead exclude each other"
		CHECK (NOT (once_per_lead AND max_per_period IS NOT NULL));

-- Stage hysteresis: a margin per model (0, the default, keeps every model as it was).
ALTER TABLE leadscore.model
	ADD COLUMN stage_exit_margin float8 NOT NULL DEFAULT 0,
	ADD CONSTRAINT "stage_exit_margin must be 0 or more" CHECK (stage_exit_margin >= 0 AND stage_exit_margin <> 'NaN');
COMMENT ON COLUMN leadscore.model.stage_exit_margin IS
	'stage hysteresis: a lead leaves its stage for a lower one only when its score falls more than this many points below the stage''s min_score (0: stages follow the score; ''Infinity'': stages never go down)';

-- A minimum time in stage per model (NULL, the default, keeps every model as it was), and the instant each
-- lead entered its stage in its state row, taken from the history (the latest change, when it led to the
-- stored stage; NULL otherwise: no minimum holds the lead until its next change).
ALTER TABLE leadscore.model
	ADD COLUMN stage_min_time interval,
	ADD CONSTRAINT "stage_min_time must be positive" CHECK (stage_min_time > interval '0'),
	ADD CONSTRAINT "stage_min_time must be less than 100000 years" CHECK (stage_min_time < interval '100000 years'),
	ADD CONSTRAINT "stage_min_time must not count months or years (fixed length)"
		CHECK (extract(year FROM stage_min_time) = 0 AND extract(month FROM stage_min_time) = 0);
COMMENT ON COLUMN leadscore.model.stage_min_time IS
	'minimum time in stage: a lead goes to a lower stage no earlier than this long after it entered its stage (NULL: no minimum; days, hours...: no months or years)';
-- Drafts (leadscore.draft, preview, publish): model.draft_of names the live model a draft is of; and the
-- number a model's state rows carry, model.state_id (its id; another once publish_concurrently has swapped
-- a draft's states in). Set here without the model's triggers: nothing is rescored.
ALTER TABLE leadscore.model
	ADD COLUMN draft_of text REFERENCES leadscore.model (name) ON UPDATE CASCADE ON DELETE CASCADE,
	ADD COLUMN state_id int,
	ADD CONSTRAINT "a model is not a draft of itself" CHECK (draft_of <> name);
ALTER TABLE leadscore.model DISABLE TRIGGER model_update;
UPDATE leadscore.model SET state_id = id;
ALTER TABLE leadscore.model ENABLE TRIGGER model_update;
ALTER TABLE leadscore.model
	ALTER COLUMN state_id SET NOT NULL,
	ADD CONSTRAINT model_state_id_key UNIQUE (state_id) DEFERRABLE;
COMMENT ON COLUMN leadscore.model.draft_of IS
	'NULL: a live model; else this row is a draft of that model (leadscore.draft): it scores nothing until leadscore.publish puts its configuration live';
COMMENT ON COLUMN leadscore.model.state_id IS
	'internal: the number the model''s state rows carry (state_<key>.model_id): its id, but after leadscore.publish_concurrently, which builds a draft''s states beside the live ones and swaps them in';
CREATE FUNCTION leadscore._may_read_state(state_id int, lead anyelement) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
	AS 'MODULE_PATHNAME', 'leadscore_may_read_state';
COMMENT ON FUNCTION leadscore._may_read_state(int, anyelement) IS
	'internal: _may_read for a state row (by the model''s state_id)';
REVOKE ALL ON FUNCTION leadscore._may_read_state(int, anyelement) FROM PUBLIC;
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
	          WHERE p.oid = 'leadscore._may_read(int, anyelement)'::regprocedure
	            AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadscore._may_read_state(int, anyelement) TO %s',
		               CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(r.grantee)) END);
	END LOOP;
END
$$;
-- Intervals kept under 100000 years, which the library's microseconds hold (a longer one made every load of
-- the configuration fail with "bigint out of range": no such value can be in a working install).
ALTER TABLE leadscore.model
	ADD CONSTRAINT "grace must be less than 100000 years" CHECK (grace < interval '100000 years');
ALTER TABLE leadscore.rule
	ADD CONSTRAINT "period must be less than 100000 years" CHECK (period < interval '100000 years');
ALTER TABLE leadscore.inactivity_rule
	ADD CONSTRAINT "inactivity interval must be less than 100000 years" CHECK (after < interval '100000 years');
-- A stage's own hysteresis: exit_margin and min_time in place of the model's (NULL, the default: the model's).
ALTER TABLE leadscore.stage
	ADD COLUMN exit_margin float8,
	ADD COLUMN min_time interval,
	ADD CONSTRAINT "stage exit_margin must be 0 or more" CHECK (exit_margin >= 0 AND exit_margin <> 'NaN'),
	ADD CONSTRAINT "stage min_time must be positive" CHECK (min_time > interval '0'),
	ADD CONSTRAINT "stage min_time must be less than 100000 years" CHECK (min_time < interval '100000 years'),
	ADD CONSTRAINT "stage min_time must not count months or years (fixed length)"
		CHECK (extract(year FROM min_time) = 0 AND extract(month FROM min_time) = 0);
COMMENT ON COLUMN leadscore.stage.exit_margin IS
	'this stage''s own exit margin in place of the model''s stage_exit_margin (NULL: the model''s; ''Infinity'': never left for a lower stage)';
COMMENT ON COLUMN leadscore.stage.min_time IS
	'this stage''s own minimum time in place of the model''s stage_min_time (NULL: the model''s)';
DO $$
DECLARE
	k text;
BEGIN
	FOREACH k IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format('ALTER TABLE leadscore.state_%1$s ADD COLUMN stage_since timestamptz', k);
		EXECUTE format($f$COMMENT ON COLUMN leadscore.state_%1$s.stage_since IS
			'internal: the instant the lead entered its stored stage (NULL: unknown; see leadscore.model.stage_min_time)'$f$, k);
		-- The readers' view of the state rows gains the column (a view over s.* keeps the columns it had).
		EXECUTE format($f$
			CREATE OR REPLACE VIEW leadscore._states_%1$s WITH (security_barrier) AS
			SELECT s.* FROM leadscore.state_%1$s s WHERE leadscore._may_read_state(s.model_id, s.lead)$f$, k);
		EXECUTE format($f$
			UPDATE leadscore.state_%1$s s SET stage_since = h.changed_at
			  FROM (SELECT DISTINCT ON (model_id, lead) model_id, lead, to_stage, changed_at
			          FROM leadscore.stage_change_%1$s ORDER BY model_id, lead, id DESC) h
			 WHERE h.model_id = s.model_id AND h.lead = s.lead AND h.to_stage = s.stage$f$, k);
	END LOOP;
END
$$;

-- The L2 penalty chosen by cross-validation (leadscore.train_cv); the roles that may train (the analyst
-- profile, or granted train by hand) may use it.
CREATE FUNCTION leadscore.train_cv(name text, query text, label text DEFAULT 'converted', features text[] DEFAULT NULL,
                                   folds int DEFAULT 5, lambdas float8[] DEFAULT NULL, max_iterations int DEFAULT 100,
                                   max_levels int DEFAULT 50, min_level_count int DEFAULT 1,
                                   max_distinct int DEFAULT 10000,
                                   OUT version int, OUT lambda float8, OUT cv_auc float8, OUT cv_log_loss float8,
                                   OUT rows bigint, OUT positives bigint, OUT iterations int, OUT converged boolean,
                                   OUT auc float8, OUT log_loss float8, OUT seconds float8)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_train_cv';
COMMENT ON FUNCTION leadscore.train_cv(text, text, text, text[], int, float8[], int, int, int, int) IS
	'train with the L2 penalty chosen by k-fold cross-validation among lambdas (default: 1e4 down to 1e-4, as scikit-learn''s LogisticRegressionCV): the lowest mean held-out log loss; the folds'' metrics in predictive_model.options -> ''cv''';
REVOKE ALL ON FUNCTION leadscore.train_cv(text, text, text, text[], int, float8[], int, int, int, int) FROM PUBLIC;
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
	          WHERE p.oid = 'leadscore.train(text, text, text, text[], float8, int, int, int, int)'::regprocedure
	            AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadscore.train_cv(text, text, text, text[], int, float8[], int, int, int, int) TO %I',
		               pg_catalog.pg_get_userbyid(r.grantee));
	END LOOP;
END
$$;

-- stage_leads finds the leads a stage holds under hysteresis too.
CREATE OR REPLACE FUNCTION leadscore.stage_leads(model text, stage text, as_of timestamptz DEFAULT now())
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
	-- Under stage hysteresis a lead stays in the stage down to min_score minus its exit margin (the stage's
	-- own, else the model's); within a minimum time in stage, at any score.
	SELECT CASE WHEN coalesce(s.min_time, m.stage_min_time) IS NULL
	            THEN s.min_score - coalesce(s.exit_margin, m.stage_exit_margin) ELSE '-Infinity' END
	  INTO lowest FROM leadscore.stage s
	  JOIN leadscore.model m ON m.name = s.model
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

-- A reset of a lead the model has not scored says so (a NOTICE), as a typo would otherwise pass unseen.
CREATE OR REPLACE FUNCTION leadscore.reset(model text, lead text, at timestamptz DEFAULT now(), reason text DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	model_id int;
	states int;
	key_type regtype;
	key_value text;
	known boolean;
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
	-- The key checked by the rules of int4in, int8in and uuid_in rather than by catching the cast's error:
	-- an exception block is a subtransaction, which on Citus 13.2.2 can make a later COPY error inside a
	-- savepoint fail the whole transaction's COMMIT.
	IF (CASE WHEN leadscore._key_suffix(key_type) = 'uuid'
	        THEN lead ~* '^([0-9a-f]{4}(-?[0-9a-f]{4}){7}|\{[0-9a-f]{4}(-?[0-9a-f]{4}){7}\})$'
	        WHEN leadscore._key_suffix(key_type) NOT IN ('int4', 'int8') THEN true
	        WHEN lead !~ '^\s*[+-]?[0-9]+\s*$' THEN false
	        WHEN leadscore._key_suffix(key_type) = 'int4'
	        THEN btrim(lead, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))::numeric BETWEEN -2147483648 AND 2147483647
	        ELSE btrim(lead, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))::numeric
	             BETWEEN -9223372036854775808 AND 9223372036854775807 END) THEN
		EXECUTE format('SELECT %L::%s::text', lead, key_type) INTO key_value;
	ELSE
		RAISE EXCEPTION 'model "%": "%" is not a lead key of type %', model, lead, key_type
			USING ERRCODE = 'invalid_text_representation';
	END IF;
	EXECUTE format('INSERT INTO leadscore.engagement_reset_%s (model_id, lead, reset_at, reason) '
	               'VALUES ($1, $2::%s, $3, $4)', leadscore._key_suffix(key_type), key_type)
		USING model_id, key_value, at, reason;
	-- A lead the model has not scored (yet): the reset is kept, and its events count from it when they come
	-- (1.2), but a typo must not pass unseen (1.6). Asked of the leads the caller sees (_states_<key>), when
	-- it may read them: nothing is said of a lead it may not see.
	IF has_table_privilege(format('leadscore._states_%s', leadscore._key_suffix(key_type)), 'SELECT') THEN
		-- (The model's state_id read first: on Citus a subquery there would not plan.)
		SELECT m.state_id INTO states FROM leadscore.model m WHERE m.id = model_id;
		EXECUTE format('SELECT EXISTS (SELECT FROM leadscore._states_%s s WHERE s.model_id = $1 AND s.lead = $2::%s)',
		               leadscore._key_suffix(key_type), key_type)
			INTO known USING states, key_value;
		IF NOT known THEN
			RAISE NOTICE 'model "%" has no lead % yet: the reset is recorded, and its events will count from %',
				model, key_value, at;
		END IF;
	END IF;
END
$$;
COMMENT ON FUNCTION leadscore.reset(text, text, timestamptz, text) IS
	'resets a lead''s engagement for a model from `at` (default now, never later): earlier events no longer score; recorded in engagement_resets';

-- Views (1.6): the score views get stage_rank, the history views from_rank and to_rank (appended: CREATE OR
-- REPLACE keeps their columns, their privileges and their dependents); the typed views are new. The same
-- block as the full install script's, but for _states_<key>, unchanged.
DO $$
DECLARE
	keys text[] := ARRAY['int4', 'int8', 'uuid', 'text'];
	k text;
	v record;
	-- A stage's rank within its model (1.6): its position by min_score ascending (1 = the lowest band), from
	-- the model's current stages; NULL for no stage or a stage the model no longer has. %s: the model's
	-- name and the stage's.
	rank text := '(SELECT NULLIF(count(*), 0)::int FROM leadscore.stage a JOIN leadscore.stage b '
	             'ON b.model = a.model AND b.min_score <= a.min_score WHERE a.model = %s AND a.name = %s)';
	-- The same for every stage, as a table (model, name, rank) the views join: a correlated subquery over
	-- leadscore.stage would keep Citus from planning the views over distributed tables.
	ranks text := '(SELECT a.model, a.name, count(*)::int AS rank FROM leadscore.stage a JOIN leadscore.stage b '
	              'ON b.model = a.model AND b.min_score <= a.min_score GROUP BY a.model, a.name)';
BEGIN
	FOREACH k IN ARRAY keys LOOP
		EXECUTE format($f$
			CREATE OR REPLACE VIEW leadscore.scores_%1$s AS
			SELECT m.name AS model, s.lead, e.score, e.fit, e.engagement, e.stage, e.grade, e.last_activity,
			       s.n_events AS events, sr.rank AS stage_rank
			  FROM leadscore._states_%1$s s
			  JOIN leadscore.model m ON m.state_id = s.model_id
			 CROSS JOIN LATERAL leadscore._eval(s, now()) e
			  LEFT JOIN $f$ || ranks || $f$ sr ON sr.model = m.name AND sr.name = e.stage$f$, k);
	END LOOP;

	-- Each view over every key type, and its typed views (1.6): the view's name, the typed views' prefix
	-- (NULL: the branches read them), its options and its branch for the key type %1$s. The branch's lead is
	-- c.lead%2$s: cast to text in the view over every key type (for a text key the cast changes nothing),
	-- of its own type in the typed view of the key type; both keep the same rows.
	FOR v IN SELECT * FROM (VALUES
		('scores', NULL, '', $f$
			SELECT model, lead%2$s AS lead, score, fit, engagement, stage, grade, last_activity, events, stage_rank
			  FROM leadscore.scores_%1$s$f$),
		('stage_changes', 'stage_changes', ' WITH (security_barrier)', $f$
			SELECT c.id, m.name AS model, c.lead%2$s AS lead, c.from_stage, c.to_stage, c.score, c.changed_at,
			       fr.rank AS from_rank, tr.rank AS to_rank
			  FROM leadscore.stage_change_%1$s c JOIN leadscore.model m ON m.id = c.model_id
			  LEFT JOIN $f$ || ranks || $f$ fr ON fr.model = m.name AND fr.name = c.from_stage
			  LEFT JOIN $f$ || ranks || $f$ tr ON tr.model = m.name AND tr.name = c.to_stage
			 WHERE leadscore._may_read(c.model_id, c.lead)$f$),
		('engagement_resets', 'engagement_resets', ' WITH (security_barrier)', $f$
			SELECT r.id, m.name AS model, r.lead%2$s AS lead, r.reset_at, r.reason, r.recorded_at, r.recorded_by
			  FROM leadscore.engagement_reset_%1$s r JOIN leadscore.model m ON m.id = r.model_id
			 WHERE leadscore._may_read(r.model_id, r.lead)$f$),
		('rfm', 'rfm_segments', ' WITH (security_barrier)', $f$
			SELECT r.model, r.lead%2$s AS lead, x.as_of, r.last_activity, x.as_of - r.last_activity AS recency,
			       r.frequency, r.volume, r.r, r.f, r.m, r.code
			  FROM leadscore.rfm_%1$s r JOIN leadscore.rfm_refresh x ON x.model = r.model
			 WHERE leadscore._may_read_named(r.model, r.lead::text)$f$)) AS x (name, typed, options, branch)
	LOOP
		EXECUTE format('CREATE OR REPLACE VIEW leadscore.%s%s AS', v.name, v.options)
			|| (SELECT string_agg(format(v.branch, b.k, '::text'), E'\n\t\tUNION ALL' ORDER BY b.n)
			      FROM unnest(keys) WITH ORDINALITY AS b (k, n));
		CONTINUE WHEN v.typed IS NULL;
		FOREACH k IN ARRAY keys LOOP
			EXECUTE format('CREATE OR REPLACE VIEW leadscore.%s_%s%s AS', v.typed, k, v.options)
				|| format(v.branch, k, '');
		END LOOP;
	END LOOP;

	EXECUTE 'CREATE OR REPLACE VIEW leadscore.score_snapshots WITH (security_barrier) AS '
		'SELECT s.*, ' || format(rank, 's.model', 's.stage') || ' AS stage_rank '
		'FROM leadscore.score_snapshot s WHERE leadscore._may_read_named(s.model, s.lead)';
	-- The typed snapshot views (1.6): score_snapshot keeps the lead as text for every model; the view of a
	-- key type keeps the rows of the models whose lead table's key has that type, and casts their lead.
	-- The cast is guarded (a CASE that checks the text first, so that it cannot fail whatever row it is
	-- evaluated on, such as a lead of a model that had another key type then): a lead whose text is not of
	-- the type is left out. The filter is one CASE, so that _may_read_named, which reads the text as the
	-- model's key, only sees the rows of the models of the view's key type whose text is of that type.
	FOR v IN SELECT * FROM (VALUES
		('int4', $t$'integer'::regtype$t$,
		 $c$CASE WHEN s.lead ~ '^-?[0-9]{1,10}$' THEN CASE WHEN s.lead::numeric BETWEEN -2147483648 AND 2147483647
		    THEN s.lead::int4 END END$c$),
		('int8', $t$'bigint'::regtype$t$,
		 $c$CASE WHEN s.lead ~ '^-?[0-9]{1,19}$' THEN CASE WHEN s.lead::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
		    THEN s.lead::int8 END END$c$),
		('uuid', $t$'uuid'::regtype$t$,
		 $c$CASE WHEN s.lead ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN s.lead::uuid END$c$),
		('text', $t$'text'::regtype, 'character varying'::regtype$t$, 's.lead')) AS x (k, types, lead)
	LOOP
		EXECUTE format($f$
			CREATE OR REPLACE VIEW leadscore.score_snapshots_%1$s WITH (security_barrier) AS
			SELECT s.day, s.model, %3$s AS lead, s.score, s.fit, s.engagement, s.stage, s.grade, s.last_activity,
			       s.taken_at, %4$s AS stage_rank
			  FROM leadscore.score_snapshot s
			 WHERE CASE WHEN s.model IN (SELECT t.model FROM leadscore.tracked_table t
			                              WHERE t.role = 'lead' AND t.key_type IN (%2$s))
			            THEN CASE WHEN (%3$s) IS NOT NULL THEN leadscore._may_read_named(s.model, s.lead) ELSE false END
			            ELSE false END$f$, v.k, v.types, v.lead, format(rank, 's.model', 's.stage'));
	END LOOP;
	FOREACH k IN ARRAY keys LOOP
		EXECUTE format($f$COMMENT ON VIEW leadscore.stage_changes_%1$s IS
			'the stage changes of the leads whose key is %1$s, as stage_changes shows them, the lead of its own type'$f$, k);
		EXECUTE format($f$COMMENT ON VIEW leadscore.engagement_resets_%1$s IS
			'the engagement resets of the leads whose key is %1$s, as engagement_resets shows them, the lead of its own type'$f$, k);
		EXECUTE format($f$COMMENT ON VIEW leadscore.rfm_segments_%1$s IS
			'the RFM segments of the leads whose key is %1$s, as rfm shows them, the lead of its own type'$f$, k);
		EXECUTE format($f$COMMENT ON VIEW leadscore.score_snapshots_%1$s IS
			'the daily score snapshots of the models whose lead key is %1$s, as score_snapshots shows them, the lead of its own type'$f$, k);
	END LOOP;
END
$$;

-- Column comments of every configuration table and every view (1.6): what each column holds and its unit,
-- as BI tools show them per field. The configuration tables' are listed; a view's come from the list of
-- view columns (most specific first: one view, a family of views, every view), or else from the column of
-- the same name of the table the view shows (predictive_models, coefficients, _states_<key>). The typed
-- views' lead is of the key's own type, the others' is text.
DO $$
DECLARE
	c record;
BEGIN
	FOR c IN SELECT * FROM (VALUES
		('model', 'name', 'the model''s name, as the other tables and the views name it'),
		('model', 'id', 'internal number of the model (model_id in the state and history tables)'),
		('model', 'half_life', 'engagement halves every half_life (an interval); NULL: no decay'),
		('model', 'floor', 'the lowest score the model gives (points); NULL: none'),
		('model', 'ceiling', 'the highest score the model gives (points); NULL: none'),
		('model', 'description', 'free text'),
		('tracked_table', 'model', 'the model (leadscore.model.name)'),
		('tracked_table', 'relid', 'the tracked table of the CRM'),
		('tracked_table', 'role', '''lead'': the lead table (one per model), ''event'': an event table'),
		('tracked_table', 'lead_column', 'the column of the lead key (lead table) or of the lead an event concerns (event table)'),
		('tracked_table', 'time_column', 'event tables: the column of the event''s time; NULL: events without a time, which do not decay'),
		('tracked_table', 'key_type', 'the type of lead_column (set when written): integer, bigint, uuid, text or varchar'),
		('category', 'model', 'the model (leadscore.model.name)'),
		('category', 'name', 'the category''s name, unique within the model'),
		('category', 'weight', 'the factor the category''s subtotal is multiplied by in the score (1: as is)'),
		('category', 'cap', 'the most points the category''s rules give a lead in total, before the weight; NULL: no cap'),
		('rule', 'model', 'the model (leadscore.model.name)'),
		('rule', 'name', 'the rule''s name, unique within the model'),
		('rule', 'source', 'the tracked table whose rows the condition reads: the lead table (a fit rule) or an event table'),
		('rule', 'condition', 'a SQL boolean expression over a row of source'),
		('rule', 'points', 'the points each matching row gives (negative allowed); event points decay with the model''s half_life'),
		('rule', 'cap', 'the most points the rule gives a lead in total; NULL: no cap'),
		('rule', 'category', 'the category the rule''s points count in (leadscore.category.name); NULL: none'),
		('rule', 'once_per_lead', 'the rule counts once per lead at most, however many rows match'),
		('rule', 'enabled', 'false: the rule gives no points (kept for later)'),
		('stage', 'model', 'the model (leadscore.model.name)'),
		('stage', 'name', 'the stage''s name, such as cold, warm, MQL'),
		('stage', 'min_score', 'the lowest score of the stage (points; ''-Infinity'' for the lowest band); the views'' stage_rank orders stages by it'),
		('grade_band', 'model', 'the model (leadscore.model.name)'),
		('grade_band', 'axis', '''fit'': a band of the fit score (A, B...), ''engagement'': a band of the engagement score (1, 2...)'),
		('grade_band', 'name', 'the band''s name, the first or second part of a grade such as A1'),
		('grade_band', 'min_score', 'the lowest fit or engagement of the band (points)'),
		('inactivity_rule', 'model', 'the model (leadscore.model.name)'),
		('inactivity_rule', 'name', 'the step''s name, unique within the model'),
		('inactivity_rule', 'after', 'the step applies once the lead''s latest event is at least this old (an interval)'),
		('inactivity_rule', 'points', 'the points the step adds to the engagement while it applies (negative: a penalty)'),
		('predictive_model', 'name', 'the trained model''s name (what a rule''s predictor names)'),
		('predictive_model', 'version', 'the training run, from 1; the latest is the one in use'),
		('predictive_model', 'label', 'the query''s boolean column that says whether a lead converted'),
		('predictive_model', 'query', 'the SQL query of past leads the model was trained on'),
		('predictive_model', 'features', 'the query''s columns the model uses'),
		('predictive_model', 'feature_kinds', 'the kind of each feature, in the order of features'),
		('predictive_model', 'method', '''logistic'' (L2 logistic regression) or ''naive_bayes'''),
		('predictive_model', 'lambda', 'logistic: the L2 penalty of the training; NULL for naive Bayes'),
		('predictive_model', 'rows', 'the training rows'),
		('predictive_model', 'positives', 'the training rows whose label is true'),
		('predictive_model', 'iterations', 'the iterations of the fit'),
		('predictive_model', 'converged', 'whether the fit converged'),
		('predictive_model', 'deviance', 'the deviance of the model on the training rows'),
		('predictive_model', 'null_deviance', 'the deviance of the intercept alone on the training rows'),
		('predictive_model', 'auc', 'the area under the ROC curve on the training rows (0 to 1)'),
		('predictive_model', 'log_loss', 'the mean log loss on the training rows (natural logarithm)'),
		('predictive_model', 'train_seconds', 'how long the training took (seconds)'),
		('predictive_model', 'options', 'the other training options (jsonb), such as naive Bayes'' alpha'),
		('predictive_model', 'trained_at', 'when the model was trained'),
		('predictive_model', 'trained_by', 'the role that trained it'),
		('predictive_model', 'description', 'free text'),
		('predictive_term', 'model', 'the trained model (leadscore.predictive_model.name)'),
		('predictive_term', 'version', 'its version (leadscore.predictive_model.version)'),
		('predictive_term', 'ord', 'the term''s position in the model, from 1'),
		('predictive_term', 'feature', 'the feature (a column of the training query); for the intercept, its name'),
		('predictive_term', 'term', 'intercept, value (per unit of a numeric feature), missing (when it is NULL), level or reference (a categorical level)'),
		('predictive_term', 'level', 'the categorical level of a level or reference term; else NULL'),
		('predictive_term', 'coefficient', 'the term''s log-odds: per unit of the feature, when it is missing, or of the level against the reference'),
		('predictive_term', 'odds_ratio', 'exp(coefficient): the factor the term multiplies the odds by'),
		('predictive_term', 'std_coefficient', 'the coefficient per standard deviation of the feature'),
		('predictive_term', 'mean', 'the mean of the term''s value on the training rows'),
		('predictive_term', 'std', 'the standard deviation of the term''s value on the training rows'),
		('predictive_term', 'count', 'the training rows the term concerns')) AS x (tbl, col, txt)
	LOOP
		EXECUTE format('COMMENT ON COLUMN leadscore.%I.%I IS %L', c.tbl, c.col, c.txt);
	END LOOP;

	FOR c IN
		WITH doc (prio, rel, col, txt) AS (VALUES
			(0, '%', 'model', 'the scoring model (leadscore.model.name)'),
			(0, '%', 'lead', 'the lead''s key in the CRM''s lead table, as text'),
			(1, '%\_int4', 'lead', 'the lead''s key in the CRM''s lead table (integer)'),
			(1, '%\_int8', 'lead', 'the lead''s key in the CRM''s lead table (bigint)'),
			(1, '%\_uuid', 'lead', 'the lead''s key in the CRM''s lead table (uuid)'),
			(1, '%\_text', 'lead', 'the lead''s key in the CRM''s lead table (text)'),
			(0, '%', 'score', 'the score (points): fit plus engagement, or the weighted sum of the categories, within floor and ceiling'),
			(0, '%', 'fit', 'the points of the lead table''s rules (points)'),
			(0, '%', 'engagement', 'the points of the event rules, decayed, and of the inactivity step (points)'),
			(0, '%', 'stage', 'the lead''s stage (leadscore.stage.name); NULL: below every stage'),
			(0, '%', 'grade', 'the fit band and the engagement band, such as A1; NULL: no bands'),
			(0, '%', 'last_activity', 'the time of the lead''s latest event'),
			(0, '%', 'events', 'the number of the lead''s events in the model''s event tables'),
			(0, '%', 'stage_rank', 'the rank of stage among the model''s current stages by min_score, 1 = the lowest (ORDER BY stage_rank sorts cold, warm, MQL); NULL: no stage'),
			(0, '%', 'from_rank', 'the rank of from_stage among the model''s current stages by min_score, 1 = the lowest; NULL: no stage'),
			(0, '%', 'to_rank', 'the rank of to_stage among the model''s current stages by min_score, 1 = the lowest; NULL: no stage'),
			(0, '%', 'id', 'the row''s number, increasing in the order the rows were recorded'),
			(1, 'stage\_changes%', 'score', 'the score when the stage changed (points)'),
			(0, '%', 'from_stage', 'the stage before the change; NULL: none (such as a new lead)'),
			(0, '%', 'to_stage', 'the stage after the change; NULL: none (such as a deleted lead)'),
			(0, '%', 'changed_at', 'when the stage changed: the time of the transaction, or the instant time alone changed it'),
			(0, '%', 'reset_at', 'from this instant on, the lead''s earlier events score in no rule'),
			(0, '%', 'reason', 'why the engagement was reset (free text)'),
			(0, '%', 'recorded_at', 'when the reset was recorded'),
			(0, '%', 'recorded_by', 'the role that recorded it'),
			(0, '%', 'as_of', 'the instant of the refresh (refresh_rfm''s as_of) the segment is of'),
			(1, 'rfm%', 'last_activity', 'the time of the lead''s latest event at as_of'),
			(0, '%', 'recency', 'as_of minus last_activity (an interval)'),
			(0, '%', 'frequency', 'the lead''s events in the refresh''s period before as_of'),
			(0, '%', 'volume', 'the sum of the refresh''s volume column over those events; NULL: no volume column'),
			(0, '%', 'r', 'recency quintile, 1 to 5 (5: the most recent)'),
			(0, '%', 'f', 'frequency quintile, 1 to 5 (5: the most events)'),
			(0, '%', 'm', 'volume quintile, 1 to 5 (5: the most volume); NULL: no volume column'),
			(0, '%', 'code', 'r, f and m as one code, such as ''555'' (the best) or ''55'' without volume'),
			(0, '%', 'day', 'the day of the snapshot'),
			(0, '%', 'taken_at', 'the instant the snapshot''s scores were read at (its score, fit... are those of this instant)'),
			(1, 'coefficients', 'name', 'a readable name of the term, such as (intercept), employees, country = FR'),
			(1, '\_states\_%', 'model_id', 'internal: the model''s state rows'' number (leadscore.model.state_id)'),
			(1, '\_states\_%', 'has_lead', 'internal: the lead''s row exists in the lead table'),
			(1, '\_states\_%', 'fit', 'internal: the points of each lead rule'),
			(1, '\_states\_%', 'eng_n', 'internal: the matching events of each event rule'),
			(1, '\_states\_%', 'eng_w', 'internal: the decayed weight of each event rule''s events, at eng_ref'),
			(1, '\_states\_%', 'eng_first', 'internal: the time of each event rule''s first matching event'),
			(1, '\_states\_%', 'eng_ref', 'internal: the reference instant of eng_w'),
			(1, '\_states\_%', 'n_events', 'internal: the number of the lead''s events'),
			(1, '\_states\_%', 'stage', 'internal: the stage last recorded'))
		SELECT v.oid, a.attname, coalesce(
		         (SELECT d.txt FROM doc d WHERE d.prio > 0 AND v.relname LIKE d.rel AND d.col = a.attname
		           ORDER BY d.prio DESC LIMIT 1),
		         (SELECT col_description(b.attrelid, b.attnum) FROM pg_attribute b
		           WHERE b.attrelid = CASE WHEN v.relname = 'predictive_models' THEN 'leadscore.predictive_model'::regclass
		                                   WHEN v.relname = 'coefficients' THEN 'leadscore.predictive_term'::regclass
		                                   WHEN v.relname LIKE '\_states\_%' THEN ('leadscore.state' || substr(v.relname, 8))::regclass END
		             AND b.attname = a.attname),
		         (SELECT d.txt FROM doc d WHERE d.prio = 0 AND d.col = a.attname)) AS txt
		  FROM pg_class v JOIN pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
		 WHERE v.relnamespace = 'leadscore'::regnamespace AND v.relkind = 'v'
	LOOP
		EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', c.oid::regclass, c.attname, c.txt);
	END LOOP;
END
$$;

-- The objects each profile may use. reader: scores, history, snapshots, hottest leads, explain (of the
-- leads it sees in the CRM); admin: the configuration, tracking, resets, recompute, and what a reader
-- reads; scheduler: the scheduled functions; analyst: training, predictions, quality measures and what a
-- reader reads.
CREATE OR REPLACE FUNCTION leadscore._profile_grants(profile text) RETURNS text[]
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	reader text[] := ARRAY[
		'SELECT ON leadscore.scores, leadscore.scores_int4, leadscore.scores_int8, leadscore.scores_uuid, '
		'leadscore.scores_text, leadscore.stage_changes, leadscore.score_snapshots, leadscore._states_int4, '
		'leadscore._states_int8, leadscore._states_uuid, leadscore._states_text, leadscore.model, leadscore.stage, '
		'leadscore.stage_changes_int4, leadscore.stage_changes_int8, leadscore.stage_changes_uuid, '
		'leadscore.stage_changes_text, leadscore.score_snapshots_int4, leadscore.score_snapshots_int8, '
		'leadscore.score_snapshots_uuid, leadscore.score_snapshots_text',
		'EXECUTE ON FUNCTION leadscore.scores_at, leadscore.explain, leadscore.top_leads, leadscore.stage_leads, '
		'leadscore._eval, leadscore._hottest, leadscore._may_read, leadscore._may_read_named, leadscore._may_read_state, '
		'leadscore._check_read'];
BEGIN
	CASE profile
	WHEN 'reader' THEN
		RETURN reader;
	WHEN 'admin' THEN
		RETURN reader || ARRAY[
			'SELECT, INSERT, UPDATE, DELETE ON leadscore.model, leadscore.rule, leadscore.category, leadscore.stage, '
			'leadscore.grade_band, leadscore.inactivity_rule, leadscore.tracked_table',
			'SELECT ON leadscore.engagement_resets, leadscore.rfm, leadscore.rfm_refresh, '
			'leadscore.engagement_resets_int4, leadscore.engagement_resets_int8, leadscore.engagement_resets_uuid, '
			'leadscore.engagement_resets_text, leadscore.rfm_segments_int4, leadscore.rfm_segments_int8, '
			'leadscore.rfm_segments_uuid, leadscore.rfm_segments_text',
			'INSERT ON leadscore.engagement_reset_int4, leadscore.engagement_reset_int8, '
			'leadscore.engagement_reset_uuid, leadscore.engagement_reset_text',
			'EXECUTE ON ALL FUNCTIONS IN SCHEMA leadscore',
			'EXECUTE ON PROCEDURE leadscore.publish_concurrently(text)'];
	WHEN 'scheduler' THEN
		RETURN ARRAY['EXECUTE ON FUNCTION leadscore.advance_stages, leadscore.snapshot, leadscore.refresh_rfm, '
		             'leadscore.relay_stage_changes'];
	WHEN 'analyst' THEN
		RETURN reader || ARRAY[
			'SELECT, INSERT, DELETE ON leadscore.predictive_model, leadscore.predictive_term',
			'SELECT ON leadscore.predictive_models, leadscore.coefficients',
			'SELECT ON leadscore.model, leadscore.rule, leadscore.tracked_table, leadscore.stage',
			'EXECUTE ON FUNCTION leadscore.train, leadscore.train_bayes, leadscore.train_cv, leadscore.predict, '
			'leadscore.predict_log_odds, '
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

-- The new views are nobody's but their owner's (1.4), as in a fresh install; a role that may read a view
-- over every key type (by grant_profile or by hand) may read its typed views.
DO $$
DECLARE
	v record;
	g record;
BEGIN
	FOR v IN SELECT x.typed, x.base, k.k
	           FROM (VALUES ('stage_changes', 'stage_changes'), ('engagement_resets', 'engagement_resets'),
	                        ('rfm_segments', 'rfm'), ('score_snapshots', 'score_snapshots')) AS x (typed, base),
	                unnest(ARRAY['int4', 'int8', 'uuid', 'text']) AS k (k)
	LOOP
		EXECUTE format('REVOKE ALL ON leadscore.%s_%s FROM PUBLIC', v.typed, v.k);
		FOR g IN SELECT a.grantee::regrole AS grantee, a.is_grantable
		           FROM pg_class c, aclexplode(c.relacl) a
		          WHERE c.oid = ('leadscore.' || v.base)::regclass AND a.privilege_type = 'SELECT'
		            AND a.grantee <> 0 AND a.grantee <> c.relowner
		LOOP
			EXECUTE format('GRANT SELECT ON leadscore.%s_%s TO %s%s', v.typed, v.k, g.grantee,
			               CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		END LOOP;
	END LOOP;
END
$$;

-- conversion_by_stage returns the stage's rank too (1.6): a new result column makes a new function, so it is
-- dropped and created again, and the roles that could run it still can (its privileges are kept through
-- a setting of this transaction).
SELECT pg_catalog.set_config('leadscore_update.acl', coalesce(p.proacl::text, ''), true)
  FROM pg_catalog.pg_proc p WHERE p.oid = 'leadscore.conversion_by_stage(text, text, timestamptz)'::regprocedure;
DROP FUNCTION leadscore.conversion_by_stage(text, text, timestamptz);
-- No fixed search_path: the query resolves names as the caller does; the body names everything with its schema.
CREATE FUNCTION leadscore.conversion_by_stage(model text, query text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (stage text, leads bigint, converted bigint, conversion_rate float8, stage_rank int)
	LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
	stages text[];
BEGIN
	IF NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name OPERATOR(pg_catalog.=) conversion_by_stage.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
	END IF;
	stages := ARRAY(SELECT st.name FROM leadscore.stage st WHERE st.model OPERATOR(pg_catalog.=) conversion_by_stage.model
	                 ORDER BY st.min_score);
	RETURN QUERY
	SELECT g.grp, g.leads, g.converted, g.conversion_rate, pg_catalog.array_position(stages, g.grp)
	  FROM leadscore.conversion_by_group(
	         pg_catalog.format('SELECT s.stage, q.converted FROM (%s) AS q (lead, converted) '
	                           'LEFT JOIN leadscore.scores_at(%L, %L) s ON s.lead OPERATOR(pg_catalog.=) q.lead::text',
	                           query, model, as_of),
	         stages) g;
END
$$;
COMMENT ON FUNCTION leadscore.conversion_by_stage(text, text, timestamptz) IS
	'conversion rate per stage of a model (lowest first, then leads without a stage), with the stage''s rank (1 = lowest); the query returns (lead, converted)';
REVOKE ALL ON FUNCTION leadscore.conversion_by_stage(text, text, timestamptz) FROM PUBLIC;
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT a.grantee::regrole AS grantee, a.is_grantable
	           FROM pg_catalog.aclexplode(NULLIF(current_setting('leadscore_update.acl'), '')::aclitem[]) a
	          WHERE a.grantee <> 0 AND a.grantee <> (SELECT p.proowner FROM pg_proc p
	                                                 WHERE p.oid = 'leadscore.conversion_by_stage(text, text, timestamptz)'::regprocedure)
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadscore.conversion_by_stage(text, text, timestamptz) TO %s%s',
		               g.grantee, CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;

-- A Citus table is refused as a tracked table (its rows live on the shards, which leadscore does not score).
CREATE OR REPLACE FUNCTION leadscore._check_tracked() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
	lead_type regtype;
	half_life interval;
	citus boolean;
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
	-- A table distributed with Citus (or a reference or Citus local table): its rows live on the shards.
	-- Once leadscore.distribute() is done, a table distributed by the lead column and co-located with the
	-- state table of its key type is scored on its shards, as those distribute() distributed; any other
	-- is refused.
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
		EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
			INTO citus USING NEW.relid;
		IF citus AND kind = 'p' THEN
			RAISE EXCEPTION 'model "%": table % is a partitioned Citus table, which leadscore does not score', NEW.model, NEW.relid
				USING ERRCODE = 'feature_not_supported',
				      DETAIL = 'Its rows are in its partitions, whose shards Citus makes apart.';
		END IF;
		IF citus THEN
			EXECUTE 'SELECT p.partmethod = ''h'' AND pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) = $2 '
			        'AND p.colocationid = (SELECT q.colocationid FROM pg_catalog.pg_dist_partition q '
			        '                       WHERE q.logicalrelid = pg_catalog.to_regclass($3)) '
			        'AND EXISTS (SELECT FROM pg_catalog.pg_dist_partition r WHERE r.logicalrelid = ''leadscore.config_push''::regclass) '
			        'AND (SELECT g.groupid = 0 FROM pg_catalog.pg_dist_local_group g) '
			        'FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
				INTO citus USING NEW.relid, NEW.lead_column::text, format('leadscore.state_%s', leadscore._key_suffix(NEW.key_type));
			IF NOT coalesce(citus, false) THEN
				RAISE EXCEPTION 'model "%": table % is a Citus table', NEW.model, NEW.relid
					USING ERRCODE = 'feature_not_supported',
					      DETAIL = format('On a Citus cluster, CALL leadscore.distribute() distributes the tables the models track; '
					                      'afterwards, on the coordinator, a model may track a table distributed by its lead column '
					                      'and co-located with leadscore.state_%s.', leadscore._key_suffix(NEW.key_type)),
					      HINT = 'See the Citus section of leadscore''s operations guide.';
			END IF;
		ELSE
			EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = pg_catalog.to_regclass($1))'
				INTO citus USING format('leadscore.state_%s', leadscore._key_suffix(NEW.key_type));
		END IF;
		IF citus AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = NEW.relid) THEN
			-- A local table whose leads' states would live on the workers (leadscore.distribute() distributed
			-- the state of its key type): its trigger on the coordinator could not write them.
			RAISE EXCEPTION 'model "%": table % is a local table, but the state of % lead keys is distributed with Citus',
				NEW.model, NEW.relid, NEW.key_type
				USING ERRCODE = 'feature_not_supported',
				      DETAIL = format('leadscore.distribute() distributed leadscore.state_%s: the leads of that key type are '
				                      'scored on the shards of tables distributed by their lead column.', leadscore._key_suffix(NEW.key_type)),
				      HINT = format('Distribute the table first: SELECT create_distributed_table(%L, %L, colocate_with => %L).',
				                    NEW.relid::text, NEW.lead_column::text, format('leadscore.state_%s', leadscore._key_suffix(NEW.key_type)));
		END IF;
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

-- Citus: leadscore.distribute() distributes the tracked tables and leadscore's per-lead tables by the lead
-- and copies the configuration to the workers, whose triggers on the shards then score each statement into
-- the co-located shards of leadscore's tables (src/pg/citus.cpp).
-- A procedure: the workers see the distributed tables once they are committed, and only then can take
-- the configuration (by name). In between, or if copying fails, a write to a shard is refused (its table is
-- tracked by no model there); calling it again goes on where it stopped.
CREATE PROCEDURE leadscore.distribute()
	LANGUAGE plpgsql
AS $$
DECLARE
	k text;
	t record;
	r record;
	failed text;
BEGIN
	-- (No SET clause: a procedure that commits cannot have one; the search path is set for each transaction.)
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'leadscore.distribute: only a superuser may distribute leadscore'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RAISE EXCEPTION 'leadscore.distribute: Citus is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'CREATE EXTENSION citus first.';
	END IF;
	EXECUTE 'SELECT groupid <> 0 FROM pg_catalog.pg_dist_local_group' INTO failed;
	IF failed::boolean THEN
		RAISE EXCEPTION 'leadscore.distribute: run it on the coordinator' USING ERRCODE = 'object_not_in_prerequisite_state';
	END IF;
	IF NOT EXISTS (SELECT FROM leadscore.tracked_table) THEN
		RAISE EXCEPTION 'leadscore.distribute: no model tracks a table'
			USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Configure the models first, then distribute.';
	END IF;
	-- Drafts are of one server; the nodes' states carry each model's id.
	IF EXISTS (SELECT FROM leadscore.model m WHERE m.draft_of IS NOT NULL) THEN
		RAISE EXCEPTION 'leadscore.distribute: a model is a draft (drafts are not distributed)'
			USING ERRCODE = 'feature_not_supported',
			      HINT = 'Delete the drafts (DELETE FROM leadscore.model WHERE draft_of IS NOT NULL), then distribute.';
	END IF;
	-- States swapped in by leadscore.publish_concurrently carry the number of the draft they were built
	-- for: renumbered as the model's own (with no draft left, no other model uses that number).
	FOR r IN SELECT m.id, m.state_id FROM leadscore.model m WHERE m.state_id <> m.id LOOP
		FOREACH k IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
			EXECUTE format('UPDATE leadscore.state_%s SET model_id = $1 WHERE model_id = $2', k) USING r.id, r.state_id;
		END LOOP;
	END LOOP;
	IF EXISTS (SELECT FROM leadscore.model m WHERE m.state_id <> m.id) THEN
		-- (The model's triggers keep state_id as it is, and would rescore: not for a renumbering.)
		failed := pg_catalog.current_setting('session_replication_role');
		PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
		UPDATE leadscore.model m SET state_id = m.id WHERE m.state_id <> m.id;
		PERFORM pg_catalog.set_config('session_replication_role', failed, true);
		PERFORM leadscore._invalidate();
	END IF;
	IF EXISTS (SELECT FROM leadscore.tracked_table x WHERE x.relid::text LIKE 'leadscore.%') THEN
		RAISE EXCEPTION 'leadscore.distribute: a model tracks one of leadscore''s own tables (RFM segments)'
			USING ERRCODE = 'feature_not_supported';
	END IF;
	-- A partitioned table's rows are in its partitions, whose shards Citus makes apart: their triggers would
	-- not find the partitioned table's tracking.
	SELECT pg_catalog.string_agg(DISTINCT x.relid::text, ', ') INTO failed
	  FROM leadscore.tracked_table x JOIN pg_class c ON c.oid = x.relid WHERE c.relkind = 'p';
	IF failed IS NOT NULL THEN
		RAISE EXCEPTION 'leadscore.distribute: tracked table % is partitioned, which leadscore does not score on Citus', failed
			USING ERRCODE = 'feature_not_supported',
			      HINT = 'Stop tracking it (leadscore.untrack), or track a table that is not partitioned, then call leadscore.distribute().';
	END IF;
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
	-- leadscore's per-lead tables of each key type in use, in one colocation group per key type.
	FOR k IN SELECT DISTINCT leadscore._key_suffix(tt.key_type) FROM leadscore.tracked_table tt ORDER BY 1 LOOP
		EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)'
			INTO failed USING format('leadscore.state_%s', k)::regclass;
		IF NOT failed::boolean THEN
			-- Citus needs the distribution column in every unique index.
			EXECUTE format('ALTER TABLE leadscore.stage_change_%1$s DROP CONSTRAINT stage_change_%1$s_pkey, '
			               'ADD PRIMARY KEY (lead, id)', k);
			EXECUTE format($q$SELECT pg_catalog.create_distributed_table('leadscore.state_%s', 'lead', colocate_with => 'none')$q$, k);
			EXECUTE format($q$SELECT pg_catalog.create_distributed_table('leadscore.stage_change_%1$s', 'lead',
			               colocate_with => 'leadscore.state_%1$s')$q$, k);
			EXECUTE format($q$SELECT pg_catalog.create_distributed_table('leadscore.stage_notice_%1$s', 'lead',
			               colocate_with => 'leadscore.state_%1$s')$q$, k);
			EXECUTE format('ALTER TABLE leadscore.engagement_reset_%1$s DROP CONSTRAINT engagement_reset_%1$s_pkey, '
			               'ADD PRIMARY KEY (lead, id)', k);
			EXECUTE format($q$SELECT pg_catalog.create_distributed_table('leadscore.engagement_reset_%1$s', 'lead',
			               colocate_with => 'leadscore.state_%1$s')$q$, k);
		END IF;
	END LOOP;
	-- The tracked tables, by their lead column, co-located with the state; without leadscore's triggers while
	-- Citus copies their rows (their states are there already), then with them on every shard.
	FOR t IN SELECT tt.relid, min(tt.lead_column) AS lead_column, min(leadscore._key_suffix(tt.key_type)) AS k,
	                count(DISTINCT tt.lead_column) AS columns
	           FROM leadscore.tracked_table tt GROUP BY tt.relid ORDER BY tt.relid LOOP
		IF t.columns > 1 THEN
			RAISE EXCEPTION 'leadscore.distribute: models track table % by different lead columns', t.relid
				USING ERRCODE = 'feature_not_supported';
		END IF;
		EXECUTE 'SELECT p.partmethod = ''h'' AND p.colocationid = (SELECT q.colocationid FROM pg_catalog.pg_dist_partition q '
		        'WHERE q.logicalrelid = $2) FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
			INTO failed USING t.relid, format('leadscore.state_%s', t.k)::regclass;
		IF failed IS NULL THEN
			FOR r IN SELECT tgname FROM pg_trigger WHERE tgrelid = t.relid AND tgname LIKE 'leadscore\_%' LOOP
				EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, t.relid);
			END LOOP;
			EXECUTE format('SELECT pg_catalog.create_distributed_table(%L, %L, colocate_with => %L)',
			               t.relid, t.lead_column, format('leadscore.state_%s', t.k));
			PERFORM leadscore._sync_triggers(t.relid);
		ELSIF NOT failed::boolean THEN
			RAISE EXCEPTION 'leadscore.distribute: table % is distributed, but not co-located with leadscore.state_%',
				t.relid, t.k USING ERRCODE = 'feature_not_supported',
				HINT = 'Undistribute it (undistribute_table), then call leadscore.distribute().';
		END IF;
	END LOOP;
	-- The table that carries each configuration change to every node, with its trigger on every node's copy.
	IF NOT leadscore._citus_table('leadscore.config_push') THEN
		PERFORM pg_catalog.create_reference_table('leadscore.config_push');
		EXECUTE 'CREATE TRIGGER config_pushed AFTER UPDATE ON leadscore.config_push '
		        'FOR EACH ROW EXECUTE FUNCTION leadscore._config_pushed()';
	END IF;
	COMMIT;
	PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
	-- The configuration, to every worker (they see the distributed tables now, by name).
	BEGIN
		UPDATE leadscore.config_push x SET version = x.version + 1, models = '{}', payload = leadscore._config_payload();
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS failed = MESSAGE_TEXT;
		RAISE EXCEPTION 'leadscore.distribute: the configuration could not be copied to a worker: %', failed
			USING HINT = 'The tables are distributed; CALL leadscore.distribute() again once the worker is reachable.';
	END;
END
$$;
COMMENT ON PROCEDURE leadscore.distribute() IS
	'Citus, on the coordinator: distributes the tracked tables and leadscore''s per-lead tables by the lead, co-located, and copies the configuration to the workers';

-- Whether a table is distributed (or a reference table) with Citus; false without Citus.
CREATE FUNCTION leadscore._citus_table(rel regclass) RETURNS boolean
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found boolean;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1)' INTO found USING rel;
	RETURN found;
END
$$;
COMMENT ON FUNCTION leadscore._citus_table(regclass) IS 'internal: whether Citus distributes a table';

-- The configuration as text: per table, its rows in their text form (tables named by name, not OID).
CREATE FUNCTION leadscore._config_payload() RETURNS jsonb
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	-- The models whose tables are all distributed (or that track none yet): a model of local tables is
	-- scored on the coordinator alone.
	WITH m AS (SELECT x.name FROM leadscore.model x
	            WHERE NOT EXISTS (SELECT FROM leadscore.tracked_table t
	                               WHERE t.model = x.name AND NOT leadscore._citus_table(t.relid)))
	SELECT jsonb_build_object(
		'model', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.model x WHERE x.name IN (SELECT name FROM m)),
		'tracked_table', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.tracked_table x WHERE x.model IN (SELECT name FROM m)),
		'category', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.category x WHERE x.model IN (SELECT name FROM m)),
		'rule', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.rule x WHERE x.model IN (SELECT name FROM m)),
		'stage', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.stage x WHERE x.model IN (SELECT name FROM m)),
		'grade_band', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.grade_band x WHERE x.model IN (SELECT name FROM m)),
		'inactivity_rule', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.inactivity_rule x WHERE x.model IN (SELECT name FROM m)),
		'predictive_model', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.predictive_model x),
		'predictive_term', (SELECT coalesce(jsonb_agg(x::text), '[]') FROM leadscore.predictive_term x))
$$;
COMMENT ON FUNCTION leadscore._config_payload() IS 'internal: the configuration, as leadscore.distribute() copies it to the workers';

-- On a worker: replaces the configuration by the coordinator's, as it was validated there (no trigger
-- fires: the states came with the rows), then makes every session reload it.
CREATE FUNCTION leadscore._apply_config(payload jsonb) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text;
BEGIN
	IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'leadscore._apply_config: only a superuser may replace the configuration'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	PERFORM pg_catalog.set_config('session_replication_role', 'replica', true);
	FOREACH t IN ARRAY ARRAY['predictive_term', 'predictive_model', 'inactivity_rule', 'grade_band', 'stage', 'rule',
	                         'category', 'tracked_table', 'model'] LOOP
		EXECUTE format('DELETE FROM leadscore.%I', t);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['model', 'tracked_table', 'category', 'rule', 'stage', 'grade_band', 'inactivity_rule',
	                         'predictive_model', 'predictive_term'] LOOP
		EXECUTE format('INSERT INTO leadscore.%1$I %2$s SELECT ((r #>> ''{}'')::leadscore.%1$I).* '
		               'FROM jsonb_array_elements($1 -> %1$L) r',
		               t, CASE WHEN t = 'model' THEN 'OVERRIDING SYSTEM VALUE' ELSE '' END)
			USING payload;
	END LOOP;
	-- (Called: this node has taken a configuration, which leadscore's readers check, refuse_unconfigured_node.)
	PERFORM pg_catalog.setval('leadscore.model_id_seq', greatest(coalesce((SELECT max(m.id) FROM leadscore.model m), 0), 1), true);
	PERFORM pg_catalog.set_config('session_replication_role', 'origin', true);
	PERFORM leadscore._invalidate();
END
$$;
COMMENT ON FUNCTION leadscore._apply_config(jsonb) IS 'internal: on a Citus worker, the configuration copied by leadscore.distribute()';
REVOKE ALL ON PROCEDURE leadscore.distribute() FROM PUBLIC;
REVOKE ALL ON FUNCTION leadscore._config_payload(), leadscore._apply_config(jsonb) FROM PUBLIC;

-- Citus: a configuration change made on the coordinator after leadscore.distribute() reaches every node in
-- its own distributed transaction. It updates the one row of this reference table (Citus writes every
-- node's copy, the workers in parallel, and commits them with the change, or none); the trigger on each
-- node's copy records the stage changes due under the old configuration, takes the new one and rescores
-- the models it names over that node's shards.
CREATE TABLE leadscore.config_push (
	id boolean PRIMARY KEY DEFAULT true CHECK (id),
	version bigint NOT NULL DEFAULT 0,
	models text[] NOT NULL DEFAULT '{}',
	payload jsonb
);
INSERT INTO leadscore.config_push DEFAULT VALUES;
COMMENT ON TABLE leadscore.config_push IS
	'internal: on Citus, a reference table whose update carries a configuration change to every node';

-- The models rescored after a configuration change (by the triggers of the configuration tables): here, or,
-- once leadscore.distribute() is done, on every node of the cluster in this transaction.
CREATE FUNCTION leadscore._rescore(models text[]) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text;
	cluster boolean := leadscore._citus_table('leadscore.config_push');
	coordinator boolean;
	pushed text[] := '{}';
BEGIN
	IF cluster THEN
		EXECUTE 'SELECT groupid = 0 FROM pg_catalog.pg_dist_local_group' INTO coordinator;
		IF NOT coordinator THEN
			RAISE EXCEPTION 'leadscore: the configuration is kept on the Citus coordinator: change it there'
				USING ERRCODE = 'object_not_in_prerequisite_state',
				      DETAIL = 'leadscore.distribute() was done: a change on the coordinator reaches every worker in its transaction.';
		END IF;
	END IF;
	FOREACH m IN ARRAY coalesce(models, '{}') LOOP
		IF NOT leadscore._is_live(m) THEN
			CONTINUE;
		END IF;
		IF cluster AND EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.model = m
		                        AND leadscore._citus_table(format('leadscore.state_%s', leadscore._key_suffix(t.key_type))::regclass)) THEN
			pushed := pushed || m;
		ELSE
			PERFORM leadscore.recompute(m);
		END IF;
	END LOOP;
	IF cluster THEN
		UPDATE leadscore.config_push x
		   SET version = x.version + 1, models = pushed, payload = leadscore._config_payload();
		-- The rest of the transaction reaches each node through the connection that rescored it, which holds
		-- the rescored models' locks there (another connection would wait for it: a distributed deadlock).
		PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
	END IF;
END
$$;
COMMENT ON FUNCTION leadscore._rescore(text[]) IS
	'internal: rescores the models a configuration change concerns, here or (Citus) on every node in the same transaction';

-- Tracking a table: its model rescored through leadscore._rescore, which on Citus (distribute() done)
-- carries the tracking to every node in the same transaction.
CREATE OR REPLACE FUNCTION leadscore.track_leads(model text, lead_table regclass, key_column name) RETURNS void
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
	-- Rows already in the table are scored now (on Citus, once distribute() is done, on every node, the
	-- tracking reaching each in this transaction: leadscore._rescore).
	PERFORM leadscore._rescore(ARRAY[model]);
END
$$;

CREATE OR REPLACE FUNCTION leadscore.track_events(model text, event_table regclass, lead_column name, time_column name DEFAULT NULL)
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
	-- Rows already in the table are scored now (on Citus, once distribute() is done, on every node, the
	-- tracking reaching each in this transaction: leadscore._rescore).
	PERFORM leadscore._rescore(ARRAY[model]);
END
$$;

-- On each node's copy of leadscore.config_push (Citus): a worker records the stage changes due under its
-- configuration so far, takes the coordinator's, drops the states of the models gone, and rescores the
-- models named over its shards; the coordinator (whose configuration it is) rescores the shards it may hold.
CREATE FUNCTION leadscore._config_pushed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m text;
	worker boolean;
	others bigint;
	gone integer[];
	shard text;
	k text;
BEGIN
	EXECUTE 'SELECT groupid <> 0 FROM pg_catalog.pg_dist_local_group' INTO worker;
	-- Rows this transaction wrote to this node through other connections are not visible here: rescoring
	-- without them would be wrong, waiting for their locks would never end.
	EXECUTE 'SELECT count(*) FROM pg_catalog.get_all_active_transactions() a '
	        'JOIN pg_catalog.get_all_active_transactions() me ON me.process_id = pg_catalog.pg_backend_pid() '
	        'WHERE a.process_id <> me.process_id AND a.global_pid = me.global_pid '
	        'AND a.transaction_number = me.transaction_number AND me.transaction_number <> 0'
		INTO others;
	IF others > 0 AND NEW.models <> '{}' THEN
		RAISE EXCEPTION 'leadscore: a configuration change of a distributed model must come before the transaction''s other statements on the cluster'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = format('This transaction already reached this node through %s other connections, whose rows the rescoring could not see.', others),
			      HINT = 'Make the configuration change first in the transaction (or SET LOCAL citus.multi_shard_modify_mode = sequential at its start).';
	END IF;
	IF worker THEN
		FOREACH m IN ARRAY NEW.models LOOP
			PERFORM leadscore._advance_model(m);
		END LOOP;
		SELECT array_agg(o.id) INTO gone FROM leadscore.model o
		 WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(NEW.payload -> 'model') r
		                    WHERE ((r #>> '{}')::leadscore.model).id = o.id);
		IF gone IS NOT NULL THEN
			FOR shard IN EXECUTE 'SELECT pg_catalog.shard_name(s.logicalrelid, s.shardid) FROM pg_catalog.pg_dist_shard s '
			                     'JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid '
			                     'WHERE s.logicalrelid::text LIKE ''leadscore.state\_%'' '
			                     'AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)' LOOP
				EXECUTE format('DELETE FROM %s WHERE model_id = ANY ($1)', shard) USING gone;
			END LOOP;
		END IF;
		PERFORM leadscore._apply_config(NEW.payload);
		-- The stage changes and engagement resets a worker records take their ids from its own sequences,
		-- in a range of its own (its group << 48): an id names one row in the whole cluster (a reset made on
		-- the coordinator takes its id there, below 1 << 48).
		FOREACH k IN ARRAY ARRAY['stage_change_int4', 'stage_change_int8', 'stage_change_uuid', 'stage_change_text',
		                         'engagement_reset_int4', 'engagement_reset_int8', 'engagement_reset_uuid',
		                         'engagement_reset_text'] LOOP
			EXECUTE format('SELECT pg_catalog.setval(%L, g.groupid::bigint << 48, false) '
			               'FROM pg_catalog.pg_dist_local_group g, leadscore.%I s WHERE s.last_value < g.groupid::bigint << 48',
			               format('leadscore.%s_id_seq', k), format('%s_id_seq', k));
		END LOOP;
	END IF;
	FOREACH m IN ARRAY NEW.models LOOP
		PERFORM leadscore._recompute_node(m);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadscore._config_pushed() IS
	'internal: on each Citus node, takes a configuration change from the coordinator and rescores that node''s shards';
REVOKE ALL ON TABLE leadscore.config_push FROM PUBLIC;
REVOKE ALL ON FUNCTION leadscore._citus_table(regclass), leadscore._rescore(text[]), leadscore._config_pushed() FROM PUBLIC;

-- Citus, on the coordinator: one stage change recorded on a worker, notified as one server notifies it.
CREATE FUNCTION leadscore._notify_stage_change(model text, lead text, from_stage text, to_stage text, score float8,
                                               changed_at timestamptz, id bigint) RETURNS void
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'leadscore_notify_stage_change';
COMMENT ON FUNCTION leadscore._notify_stage_change(text, text, text, text, float8, timestamptz, bigint) IS
	'internal: the leadscore_stage notification of a stage change (leadscore.relay_stage_changes)';
REVOKE ALL ON FUNCTION leadscore._notify_stage_change(text, text, text, text, float8, timestamptz, bigint) FROM PUBLIC;

-- Citus: the stage changes recorded on the workers since the last run, notified on the coordinator as one
-- server notifies them (channel leadscore_stage), each once: their rows leave leadscore.stage_notice_<key>
-- in the transaction that sends the notifications, which go at its commit.
CREATE FUNCTION leadscore.relay_stage_changes() RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	r record;
	n bigint := 0;
BEGIN
	FOREACH k IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		IF NOT leadscore._citus_table(format('leadscore.stage_notice_%s', k)::regclass) THEN
			CONTINUE;
		END IF;
		FOR r IN EXECUTE format('WITH d AS (DELETE FROM leadscore.stage_notice_%s RETURNING *) '
		                        'SELECT d.id, d.lead::text AS lead, d.from_stage, d.to_stage, d.score, d.changed_at, m.name AS model '
		                        'FROM d JOIN leadscore.model m ON m.id = d.model_id ORDER BY d.changed_at, d.id', k) LOOP
			PERFORM leadscore._notify_stage_change(r.model, r.lead, r.from_stage, r.to_stage, r.score, r.changed_at, r.id);
			n := n + 1;
		END LOOP;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION leadscore.relay_stage_changes() IS
	'Citus, on the coordinator: notifies (leadscore_stage) the stage changes recorded on the workers since the last call, each once; returns how many';
REVOKE ALL ON FUNCTION leadscore.relay_stage_changes() FROM PUBLIC;

-- The triggers of a distributed tracked table are created and dropped with Citus's leave.
CREATE OR REPLACE FUNCTION leadscore._sync_triggers(tbl regclass) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	want text[];
	g text;
	citus text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_class WHERE oid = tbl) THEN
		RETURN;
	END IF;
	-- A table distributed by leadscore.distribute(): Citus creates and drops its triggers on every shard.
	IF leadscore._citus_table(tbl) THEN
		citus := pg_catalog.current_setting('citus.enable_unsafe_triggers');
		PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
		-- Once distribute() is done, a configuration change follows in this transaction (leadscore._rescore),
		-- which each node must see through the one connection this DDL used there: one per node, for the
		-- rest of the transaction.
		IF leadscore._citus_table('leadscore.config_push') THEN
			PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
		END IF;
	END IF;
	FOR r IN
		SELECT x.relid, c.relkind,
		       EXISTS (SELECT FROM leadscore.tracked_table t WHERE t.relid = x.relid) AS tracked,
		       EXISTS (SELECT FROM pg_partition_ancestors(x.relid) a JOIN leadscore.tracked_table t ON t.relid = a.relid
		                WHERE a.relid <> x.relid) AS under_tracked
		  FROM (SELECT tbl::oid AS relid UNION SELECT p.relid FROM pg_partition_tree(tbl) p) x
		  JOIN pg_class c ON c.oid = x.relid
		 ORDER BY x.relid
	LOOP
		want := CASE
			WHEN r.tracked AND r.relkind = 'p'
				THEN ARRAY['leadscore_insert', 'leadscore_update', 'leadscore_delete', 'leadscore_truncate', 'leadscore_truncating']
			WHEN r.tracked THEN ARRAY['leadscore_insert', 'leadscore_update', 'leadscore_delete', 'leadscore_truncate']
			WHEN r.under_tracked THEN ARRAY['leadscore_insert', 'leadscore_update', 'leadscore_delete', 'leadscore_truncate',
			                                'leadscore_truncating']
			ELSE '{}'::text[] END;
		FOREACH g IN ARRAY ARRAY['leadscore_insert', 'leadscore_update', 'leadscore_delete', 'leadscore_truncate',
		                         'leadscore_truncating'] LOOP
			IF g = ANY (want) AND NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = r.relid AND tgname = g) THEN
				EXECUTE format(CASE g
					WHEN 'leadscore_insert' THEN 'CREATE TRIGGER leadscore_insert AFTER INSERT ON %s '
					     'REFERENCING NEW TABLE AS leadscore_new FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()'
					WHEN 'leadscore_update' THEN 'CREATE TRIGGER leadscore_update AFTER UPDATE ON %s '
					     'REFERENCING OLD TABLE AS leadscore_old NEW TABLE AS leadscore_new '
					     'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()'
					WHEN 'leadscore_delete' THEN 'CREATE TRIGGER leadscore_delete AFTER DELETE ON %s '
					     'REFERENCING OLD TABLE AS leadscore_old FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()'
					WHEN 'leadscore_truncate' THEN 'CREATE TRIGGER leadscore_truncate AFTER TRUNCATE ON %s '
					     'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()'
					ELSE 'CREATE TRIGGER leadscore_truncating BEFORE TRUNCATE ON %s '
					     'FOR EACH STATEMENT EXECUTE FUNCTION leadscore._track_trigger()' END, r.relid::regclass);
			ELSIF NOT g = ANY (want) AND EXISTS (SELECT FROM pg_trigger WHERE tgrelid = r.relid AND tgname = g) THEN
				EXECUTE format('DROP TRIGGER %I ON %s', g, r.relid::regclass);
			END IF;
		END LOOP;
	END LOOP;
	IF citus IS NOT NULL THEN
		PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', citus, true);
	END IF;
END
$$;

-- Citus: the stage changes recorded on a worker, waiting to be notified on the coordinator.
DO $do$
DECLARE
	k text;
BEGIN
	FOREACH k IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format($f$
			CREATE TABLE leadscore.stage_notice_%1$s (
				id bigint NOT NULL,
				model_id int NOT NULL,
				lead %1$s NOT NULL,
				from_stage text,
				to_stage text,
				score float8 NOT NULL,
				changed_at timestamptz NOT NULL,
				PRIMARY KEY (lead, id)
			)$f$, k);
		EXECUTE format($f$COMMENT ON TABLE leadscore.stage_notice_%1$s IS
			'internal: on Citus, stage changes of leads whose key is %1$s recorded on a worker, not yet notified on the coordinator'$f$, k);
		EXECUTE format('REVOKE ALL ON leadscore.stage_notice_%s FROM PUBLIC', k);
	END LOOP;
END
$do$;

-- scores_at reads a model's state rows by its state_id.
CREATE OR REPLACE FUNCTION leadscore.scores_at(model text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (lead text, score float8, fit float8, engagement float8, stage text, grade text,
	               last_activity timestamptz)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM leadscore.model m WHERE m.name = scores_at.model) THEN
		PERFORM leadscore._check_read(scores_at.model);
	ELSIF scores_at.model IS NOT NULL THEN
		RAISE EXCEPTION 'model "%" does not exist', scores_at.model USING ERRCODE = 'undefined_object';
	END IF;
	RETURN QUERY
	SELECT s.lead::text, e.* FROM leadscore._states_int4 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.state_id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore._states_int8 s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.state_id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead::text, e.* FROM leadscore._states_uuid s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.state_id FROM leadscore.model m WHERE m.name = scores_at.model)
	UNION ALL
	SELECT s.lead, e.* FROM leadscore._states_text s CROSS JOIN LATERAL leadscore._eval(s, as_of) e
	 WHERE s.model_id = (SELECT m.state_id FROM leadscore.model m WHERE m.name = scores_at.model);
END
$$;

-- Drafts: a draft is never live.
CREATE OR REPLACE FUNCTION leadscore._is_live(model text) RETURNS boolean
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(bool_and(EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = 'leadscore_insert')),
	                false)
	       AND NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = _is_live.model AND m.draft_of IS NOT NULL)
	  FROM leadscore.tracked_table t WHERE t.model = _is_live.model
$$;
COMMENT ON FUNCTION leadscore._is_live(text) IS 'internal: whether leadscore''s triggers are on all the model''s tables (and it is no draft)';
-- Drafts (1.6): a draft is a model row that names the live model it is a draft of (model.draft_of), with a
-- copy of its configuration: rules, categories, stages, grade bands, inactivity steps and tracked tables.
-- A draft scores nothing: its edits rescore nothing, no trigger routes a row to it, it has no states and
-- no history. leadscore.preview says how the draft would move the live model's leads between stages;
-- leadscore.publish gives the live model the draft's configuration in one rescoring, and the draft the
-- configuration the model had (publishing it again rolls back). Both copies keep each rule's author.
CREATE FUNCTION leadscore._check_model() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND (OLD.draft_of IS NULL) <> (NEW.draft_of IS NULL) THEN
		RAISE EXCEPTION 'model "%": a live model cannot become a draft, nor a draft a live model', NEW.name
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'leadscore.draft(model) makes a draft of a model; leadscore.publish(draft) puts its configuration live.';
	END IF;
	-- The state rows a model reads are its own: only leadscore.publish_concurrently swaps them.
	IF TG_OP = 'INSERT' THEN
		NEW.state_id := NEW.id;
	ELSIF NOT leadscore._publishing() THEN
		NEW.state_id := OLD.state_id;
	END IF;
	IF NEW.draft_of IS NOT NULL AND EXISTS (SELECT FROM leadscore.model m
	                                         WHERE m.name = NEW.draft_of AND m.draft_of IS NOT NULL) THEN
		RAISE EXCEPTION 'model "%" is a draft: a draft is of a live model', NEW.draft_of
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadscore._check_model() IS 'internal: a draft is of a live model, and stays a draft; a model''s state_id is its own';

CREATE FUNCTION leadscore._publishing() RETURNS boolean
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'leadscore_publishing';
COMMENT ON FUNCTION leadscore._publishing() IS
	'internal: whether leadscore.draft or leadscore.publish is copying a configuration (its triggers then wait for the one rescoring at its end)';

CREATE FUNCTION leadscore.draft(model text, draft text DEFAULT NULL) RETURNS text
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'leadscore_draft';
COMMENT ON FUNCTION leadscore.draft(text, text) IS
	'makes a draft of a live model (named draft, or <model>_draft): a copy of its configuration to edit without touching the live scores; returns its name';

CREATE FUNCTION leadscore.preview(draft text, as_of timestamptz DEFAULT now())
	RETURNS TABLE (from_stage text, to_stage text, leads bigint)
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'leadscore_preview';
COMMENT ON FUNCTION leadscore.preview(text, timestamptz) IS
	'how a draft would move its model''s leads between stages: per pair (stage in the live model, stage under the draft), the leads (of those the caller may read), scored from scratch; writes nothing';

CREATE FUNCTION leadscore.publish(draft text) RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'leadscore_publish';
COMMENT ON FUNCTION leadscore.publish(text) IS
	'puts a draft''s configuration live in its model in one rescoring (stage changes recorded at that instant); the draft then holds the configuration the model had: publishing it again rolls back. Returns the leads rescored';
-- leadscore.publish_concurrently (1.6): a draft's states are built beside the live model's while its
-- writers go on, each transaction short; the leads they touch meanwhile are noted (draft_touch_<key>) and
-- built again; a last short transaction, which the writers wait for, swaps the states and configurations
-- in (see docs/drafts.md).
CREATE TABLE leadscore.draft_build (
	draft_id int PRIMARY KEY,
	model_id int NOT NULL,
	started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE leadscore.draft_build IS
	'internal: the drafts whose states leadscore.publish_concurrently is building (while a row is here, the model''s writers note the leads they touch)';
COMMENT ON COLUMN leadscore.draft_build.draft_id IS 'internal: the draft (leadscore.model.id)';
COMMENT ON COLUMN leadscore.draft_build.model_id IS 'internal: the live model it is a draft of (leadscore.model.id)';
COMMENT ON COLUMN leadscore.draft_build.started_at IS 'internal: when the build began';
DO $$
DECLARE
	k text;
BEGIN
	FOREACH k IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
		EXECUTE format('CREATE TABLE leadscore.draft_touch_%1$s (draft_id int NOT NULL, lead %1$s NOT NULL)', k);
		EXECUTE format($f$COMMENT ON TABLE leadscore.draft_touch_%1$s IS
			'internal: leads whose key is %1$s that the live model''s writers touched while leadscore.publish_concurrently built a draft'$f$, k);
		EXECUTE format($f$COMMENT ON COLUMN leadscore.draft_touch_%1$s.draft_id IS 'internal: the draft being built (leadscore.draft_build)'$f$, k);
		EXECUTE format($f$COMMENT ON COLUMN leadscore.draft_touch_%1$s.lead IS 'internal: the lead touched'$f$, k);
	END LOOP;
END
$$;
CREATE PROCEDURE leadscore.publish_concurrently(draft text)
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_publish_concurrently';
COMMENT ON PROCEDURE leadscore.publish_concurrently(text) IS
	'puts a draft''s configuration live without holding the model''s writers for the rescoring: the draft''s states are built beside the live ones in short transactions, then swapped in; each lead is scored under the old or the new configuration, never a mix. CALL it outside a transaction block';
REVOKE ALL ON TABLE leadscore.draft_build, leadscore.draft_touch_int4, leadscore.draft_touch_int8,
	leadscore.draft_touch_uuid, leadscore.draft_touch_text FROM PUBLIC;
REVOKE ALL ON PROCEDURE leadscore.publish_concurrently(text) FROM PUBLIC;
CREATE TRIGGER check_model BEFORE INSERT OR UPDATE ON leadscore.model
	FOR EACH ROW EXECUTE FUNCTION leadscore._check_model();
REVOKE ALL ON FUNCTION leadscore._check_model(), leadscore._publishing(), leadscore.draft(text, text),
	leadscore.preview(text, timestamptz), leadscore.publish(text) FROM PUBLIC;
-- The roles that may recompute (the admin profile) may draft, preview and publish.
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
	          WHERE p.oid = 'leadscore.recompute(text)'::regprocedure
	            AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadscore._publishing(), leadscore.draft(text, text), '
		               'leadscore.preview(text, timestamptz), leadscore.publish(text) TO %I',
		               pg_catalog.pg_get_userbyid(r.grantee));
		EXECUTE format('GRANT EXECUTE ON PROCEDURE leadscore.publish_concurrently(text) TO %I',
		               pg_catalog.pg_get_userbyid(r.grantee));
	END LOOP;
END
$$;

-- A configuration change rescores through leadscore._rescore (on Citus: on every node, in its transaction).
CREATE OR REPLACE FUNCTION leadscore._config_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	models text[];
	m text;
BEGIN
	-- leadscore.draft and leadscore.publish copy a configuration: they rescore once, at their end.
	IF leadscore._publishing() THEN
		PERFORM leadscore._invalidate();
		RETURN NULL;
	END IF;
	IF TG_OP = 'INSERT' THEN
		SELECT array_agg(DISTINCT n.model) INTO models FROM leadscore_new n;
	ELSIF TG_OP = 'UPDATE' THEN
		SELECT array_agg(DISTINCT x.model) INTO models
		  FROM (SELECT model FROM leadscore_new UNION SELECT model FROM leadscore_old) x;
	ELSE
		SELECT array_agg(DISTINCT o.model) INTO models FROM leadscore_old o;
	END IF;
	IF models IS NULL THEN -- no row changed
		RETURN NULL;
	END IF;
	FOREACH m IN ARRAY models LOOP
		PERFORM leadscore._advance_model(m);
	END LOOP;
	PERFORM leadscore._invalidate();
	PERFORM leadscore._rescore(models);
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
	-- leadscore.draft and leadscore.publish copy a configuration: they rescore once, at their end.
	IF leadscore._publishing() THEN
		PERFORM leadscore._invalidate();
		RETURN NULL;
	END IF;
	IF TG_OP = 'UPDATE' THEN
		FOR m IN SELECT o.name FROM leadscore_old o LOOP
			PERFORM leadscore._advance_model(m.name);
		END LOOP;
	END IF;
	PERFORM leadscore._invalidate();
	IF TG_OP = 'DELETE' THEN
		-- (Citus: each node drops the states of its shards when the change reaches it, leadscore._rescore.)
		FOREACH t IN ARRAY ARRAY['int4', 'int8', 'uuid', 'text'] LOOP
			IF NOT leadscore._citus_table(format('leadscore.state_%s', t)::regclass) THEN
				EXECUTE format('DELETE FROM leadscore.state_%s WHERE model_id IN (SELECT o.state_id FROM leadscore_old o)', t);
			END IF;
			-- A build of a deleted draft (or of a draft of a deleted model) that publish_concurrently left.
			EXECUTE format('DELETE FROM leadscore.draft_touch_%s WHERE draft_id IN (SELECT o.id FROM leadscore_old o)', t);
		END LOOP;
		DELETE FROM leadscore.draft_build b
		 WHERE b.draft_id IN (SELECT o.id FROM leadscore_old o) OR b.model_id IN (SELECT o.id FROM leadscore_old o);
		IF EXISTS (SELECT FROM leadscore_old) THEN
			PERFORM leadscore._rescore('{}');
		END IF;
	ELSIF TG_OP = 'UPDATE' THEN
		FOR m IN SELECT n.name, n.half_life FROM leadscore_new n LOOP
			IF m.half_life IS NOT NULL AND EXISTS (
				SELECT FROM leadscore.tracked_table t
				 WHERE t.model = m.name AND t.role = 'event' AND t.time_column IS NULL) THEN
				RAISE EXCEPTION 'model "%" tracks an event table without time column: it cannot decay', m.name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END LOOP;
		IF EXISTS (SELECT FROM leadscore_new) THEN
			PERFORM leadscore._rescore(ARRAY(SELECT n.name FROM leadscore_new n ORDER BY n.id));
		END IF;
	END IF;
	RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION leadscore._predictor_changed() RETURNS trigger
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
BEGIN
	PERFORM leadscore._invalidate();
	PERFORM leadscore._rescore(ARRAY(SELECT DISTINCT ru.model FROM leadscore.rule ru
	                                  WHERE ru.predictor = changed AND ru.enabled ORDER BY 1));
	RETURN NULL;
END
$$;

-- On a Citus node: the recompute of a model's leads in this node's shards (leadscore.recompute on the
-- coordinator runs it on every worker at once).
CREATE FUNCTION leadscore._recompute_node(model text) RETURNS bigint
	LANGUAGE c VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_recompute_node';
COMMENT ON FUNCTION leadscore._recompute_node(text) IS
	'internal: on a Citus node, recomputes a model''s leads in this node''s shards';
REVOKE ALL ON FUNCTION leadscore._recompute_node(text) FROM PUBLIC;

-- On a Citus node: the stage changes due in this node's shards (leadscore.advance_stages on the
-- coordinator runs it on every worker at once, at the coordinator's instant).
CREATE FUNCTION leadscore._advance_node(as_of timestamptz) RETURNS bigint
	LANGUAGE c VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'leadscore_advance_node';
COMMENT ON FUNCTION leadscore._advance_node(timestamptz) IS
	'internal: on a Citus node, records the stage changes due in this node''s shards';
REVOKE ALL ON FUNCTION leadscore._advance_node(timestamptz) FROM PUBLIC;

-- Long operations say what they do: snapshot and refresh_rfm of a large model (100,000 leads or event
-- rows or more) in NOTICEs, from the planner's estimate of the tables' rows.
-- The planner's estimate of a table's rows (of its leaf partitions, for a partitioned table; 0 for a table
-- never analyzed): what the long operations say they will read.
CREATE FUNCTION leadscore._estimated_rows(tbl regclass) RETURNS float8
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8
	  FROM pg_class c
	 WHERE c.relkind = 'r' AND (c.oid = tbl OR c.oid IN (SELECT p.relid FROM pg_partition_tree(tbl) p))
$$;
COMMENT ON FUNCTION leadscore._estimated_rows(regclass) IS
	'internal: the planner''s estimate of a table''s rows (its leaf partitions''), 0 if never analyzed';
REVOKE ALL ON FUNCTION leadscore._estimated_rows(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION leadscore.snapshot(model text DEFAULT NULL, day date DEFAULT current_date, as_of timestamptz DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	taken timestamptz := coalesce(as_of, least(now(), (snapshot.day + 1)::timestamptz));
	n bigint := 0;
	k bigint;
	mname text;
	estimate float8;
	started timestamptz;
BEGIN
	IF snapshot.day IS NULL THEN
		RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF snapshot.model IS NOT NULL AND NOT EXISTS (SELECT FROM leadscore.model m WHERE m.name = snapshot.model) THEN
		RAISE EXCEPTION 'model "%" does not exist', snapshot.model USING ERRCODE = 'undefined_object';
	END IF;
	DELETE FROM leadscore.score_snapshot s
	 WHERE s.day = snapshot.day AND (snapshot.model IS NULL OR s.model = snapshot.model);
	-- Model by model; a large one (100,000 leads or more) says what it will write and what it wrote.
	FOR mname IN SELECT x.name FROM leadscore.model x WHERE snapshot.model IS NULL OR x.name = snapshot.model
	          ORDER BY x.name LOOP
		SELECT coalesce(sum(leadscore._estimated_rows(tt.relid)), 0) INTO estimate
		  FROM leadscore.tracked_table tt WHERE tt.model = mname AND tt.role = 'lead';
		IF estimate >= 100000 THEN
			RAISE NOTICE 'model "%": snapshot of about % leads for %', mname, round(estimate), snapshot.day;
		END IF;
		started := clock_timestamp();
		INSERT INTO leadscore.score_snapshot (day, model, lead, score, fit, engagement, stage, grade, last_activity, taken_at)
		SELECT snapshot.day, mname, x.lead, x.score, x.fit, x.engagement, x.stage, x.grade, x.last_activity, taken
		  FROM leadscore.scores_at(mname, taken) x;
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
		IF estimate >= 100000 OR k >= 100000 THEN
			RAISE NOTICE 'model "%": % leads written to the snapshot of % in % s', mname, k, snapshot.day,
				round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
		END IF;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION leadscore.snapshot(text, date, timestamptz) IS
	'writes (or rewrites) the day''s snapshot of a model''s (NULL: every model''s) scores, taken at the end of the day or now if earlier (or at as_of); returns the rows written';

CREATE OR REPLACE FUNCTION leadscore.refresh_rfm(model text, period interval DEFAULT '90 days', volume_column name DEFAULT NULL,
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
	started timestamptz := clock_timestamp();
	estimate float8;
BEGIN
	q := leadscore._activity_query(model, period, volume_column, as_of);
	-- A large model (100,000 event rows or more) says what it will read and what it did.
	SELECT coalesce(sum(leadscore._estimated_rows(tt.relid)), 0) INTO estimate
	  FROM leadscore.tracked_table tt WHERE tt.model = refresh_rfm.model AND tt.role = 'event';
	IF estimate >= 100000 THEN
		RAISE NOTICE 'model "%": RFM segments from about % event rows', model, round(estimate);
	END IF;
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
	IF estimate >= 100000 OR n_leads >= 100000 THEN
		RAISE NOTICE 'model "%": % leads segmented, % RFM rows written in % s', model, n_leads, n_changed,
			round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
	END IF;
	RETURN n_changed;
END
$$;
COMMENT ON FUNCTION leadscore.refresh_rfm(text, interval, name, timestamptz) IS
	'segments a model''s leads into RFM quintiles (r: recency, f: events in the period, m: sum of volume_column over them; 5 best) in leadscore.rfm_<key type>, writing only the rows that change; returns how many rows it inserted, updated or deleted';

