-- leadscore 1.5 -> 1.6: one source of truth for rule validation. The checks of a rule that read the row
-- alone are CHECK constraints of leadscore.rule, as those of the other configuration tables already were;
-- the trigger leadscore._check_rule keeps the checks that read other tables (the model, the tracked
-- table, the category, the trained model; the condition, compiled as its author); ModelSpec::validate in
-- the library checks what only the whole model shows (names unique across rules and categories, bands).
-- The library gives the same answer as the constraints for every value. No row changes: every existing
-- rule already passed the same checks in the trigger.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.6'" to load this file. \quit

ALTER TABLE leadscore.rule
	ADD CONSTRAINT "points must be finite" CHECK (points NOT IN ('Infinity', '-Infinity', 'NaN')),
	ADD CONSTRAINT "cap must be positive and finite" CHECK (cap > 0 AND cap < 'Infinity'),
	ADD CONSTRAINT "a cap per period and once_per_lead exclude each other"
		CHECK (NOT (once_per_lead AND max_per_period IS NOT NULL));

-- A reset of a lead the model has not scored says so (a NOTICE), as a typo would otherwise pass unseen.
CREATE OR REPLACE FUNCTION leadscore.reset(model text, lead text, at timestamptz DEFAULT now(), reason text DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	model_id int;
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
	BEGIN
		EXECUTE format('SELECT %L::%s::text', lead, key_type) INTO key_value;
	EXCEPTION WHEN data_exception THEN
		RAISE EXCEPTION 'model "%": "%" is not a lead key of type %', model, lead, key_type
			USING ERRCODE = 'invalid_text_representation';
	END;
	EXECUTE format('INSERT INTO leadscore.engagement_reset_%s (model_id, lead, reset_at, reason) '
	               'VALUES ($1, $2::%s, $3, $4)', leadscore._key_suffix(key_type), key_type)
		USING model_id, key_value, at, reason;
	-- A lead the model has not scored (yet): the reset is kept, and its events count from it when they come
	-- (1.2), but a typo must not pass unseen (1.6). Asked of the leads the caller sees (_states_<key>), when
	-- it may read them: nothing is said of a lead it may not see.
	IF has_table_privilege(format('leadscore._states_%s', leadscore._key_suffix(key_type)), 'SELECT') THEN
		EXECUTE format('SELECT EXISTS (SELECT FROM leadscore._states_%s s WHERE s.model_id = $1 AND s.lead = $2::%s)',
		               leadscore._key_suffix(key_type), key_type)
			INTO known USING model_id, key_value;
		IF NOT known THEN
			RAISE NOTICE 'model "%" has no lead % yet: the reset is recorded, and its events will count from %',
				model, key_value, at;
		END IF;
	END IF;
END
$$;
COMMENT ON FUNCTION leadscore.reset(text, text, timestamptz, text) IS
	'resets a lead''s engagement for a model from `at` (default now, never later): earlier events no longer score; recorded in engagement_resets';
