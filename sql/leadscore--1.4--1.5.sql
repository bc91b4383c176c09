-- leadscore 1.4 -> 1.5: partitioned tables. Tracking a partitioned lead or event table scores the rows
-- written through it or straight into any of its partitions (existing, created or attached later);
-- TRUNCATE, DETACH and DROP of a partition rescore the leads of its rows, ATTACH those of the rows it brings.
\echo Use "ALTER EXTENSION leadscore UPDATE TO '1.5'" to load this file. \quit

--------------------------------------------------------------------------------------------------
-- Triggers on partitions
--------------------------------------------------------------------------------------------------

-- A statement fires the statement triggers of the table it names alone: the rows routed from a tracked
-- partitioned table to its partitions are seen by the tracked table's triggers, the rows written straight
-- into a partition by the partition's. So each partition, at any depth, has leadscore's insert, update and
-- delete triggers, and two TRUNCATE ones: BEFORE reads its rows, AFTER scores them as deleted. A
-- tracked partitioned table has a BEFORE TRUNCATE trigger too: a TRUNCATE of all of it is one recompute,
-- its partitions' rows are not scored one by one first.
CREATE OR REPLACE FUNCTION leadscore._sync_triggers(tbl regclass) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r record;
	want text[];
	g text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_class WHERE oid = tbl) THEN
		RETURN;
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
END
$$;
COMMENT ON FUNCTION leadscore._sync_triggers(regclass) IS
	'internal: leadscore''s triggers exist on a table, and on each of its partitions, exactly while a model tracks it';

-- A partition is not tracked on its own (the statements on its partitioned table would not fire its
-- triggers): the partitioned table is. Nor is a partitioned table one of whose partitions is tracked.
CREATE FUNCTION leadscore._check_tracked_tree() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parent regclass;
	inner_table regclass;
BEGIN
	SELECT i.inhparent INTO parent FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhrelid = NEW.relid AND c.relispartition;
	IF parent IS NOT NULL THEN
		RAISE EXCEPTION 'model "%": table % is a partition of %', NEW.model, NEW.relid, parent
			USING ERRCODE = 'wrong_object_type',
			      HINT = 'Track the partitioned table: the rows of all its partitions are scored with it.';
	END IF;
	SELECT t.relid INTO inner_table FROM pg_partition_tree(NEW.relid) p JOIN leadscore.tracked_table t ON t.relid = p.relid
	 WHERE p.relid <> NEW.relid LIMIT 1;
	IF inner_table IS NOT NULL THEN
		RAISE EXCEPTION 'model "%": partition % of table % is tracked', NEW.model, inner_table, NEW.relid
			USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Untrack the partition (leadscore.untrack) first.';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadscore._check_tracked_tree() IS 'internal: refuses tracking a partition, or a table with a tracked partition';
CREATE TRIGGER check_tracked_tree BEFORE INSERT OR UPDATE OF relid ON leadscore.tracked_table
	FOR EACH ROW EXECUTE FUNCTION leadscore._check_tracked_tree();

--------------------------------------------------------------------------------------------------
-- Partitions created, attached, detached, dropped
--------------------------------------------------------------------------------------------------

-- ddl_command_end now also sees CREATE TABLE (... PARTITION OF: the new partition gets the triggers),
-- ATTACH / DETACH PARTITION (the attached rows scored as inserted; the detached table loses the triggers)
-- and the drops (the rows read at the command's start scored as deleted).
DROP EVENT TRIGGER leadscore_ddl_end;
CREATE EVENT TRIGGER leadscore_ddl_end ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION leadscore._on_ddl_end();
COMMENT ON FUNCTION leadscore._on_ddl_end() IS
	'internal: refuses an ALTER TABLE that breaks a tracking or a rule, rescores the models after a column type change, '
	'puts leadscore''s triggers on new partitions of tracked tables, scores the rows of partitions attached, detached or dropped';

-- Before a partition of a tracked table is detached or dropped (DROP TABLE, DROP SCHEMA ... CASCADE,
-- DROP OWNED), its rows are read, to be scored as deleted at the command's end.
CREATE FUNCTION leadscore._on_ddl_start() RETURNS event_trigger
	LANGUAGE c AS 'MODULE_PATHNAME', 'leadscore_on_ddl_start';
COMMENT ON FUNCTION leadscore._on_ddl_start() IS
	'internal: reads the rows of the partitions of tracked tables that a DETACH PARTITION or a DROP removes';
CREATE EVENT TRIGGER leadscore_ddl_start ON ddl_command_start
	WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'DROP SCHEMA', 'DROP OWNED')
	EXECUTE FUNCTION leadscore._on_ddl_start();
REVOKE ALL ON FUNCTION leadscore._sync_triggers(regclass), leadscore._check_tracked_tree(), leadscore._on_ddl_start()
	FROM PUBLIC;

-- Partitioned tables tracked before 1.5: their partitions get the triggers, and their models are recomputed
-- (rows written straight into a partition were not scored).
DO $$
DECLARE
	t regclass;
	m text;
BEGIN
	FOR t IN SELECT DISTINCT tt.relid FROM leadscore.tracked_table tt JOIN pg_class c ON c.oid = tt.relid
	          WHERE c.relkind = 'p' ORDER BY 1 LOOP
		PERFORM leadscore._sync_triggers(t);
	END LOOP;
	FOR m IN SELECT DISTINCT tt.model FROM leadscore.tracked_table tt JOIN pg_class c ON c.oid = tt.relid
	          WHERE c.relkind = 'p' AND leadscore._is_live(tt.model) ORDER BY 1 LOOP
		RAISE NOTICE 'leadscore: model "%" tracks a partitioned table: recomputed', m;
		PERFORM leadscore.recompute(m);
	END LOOP;
END
$$;

--------------------------------------------------------------------------------------------------
-- Clear errors
--------------------------------------------------------------------------------------------------

-- scores_at of a model that does not exist (a typo) is an error, as in every other function, not an empty
-- answer; a NULL model still gives no rows.
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
