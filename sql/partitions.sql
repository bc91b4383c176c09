-- Partitioned lead and event tables (1.5): tracking the partitioned table scores the rows written through
-- it or straight into any partition (existing, created or attached later, at any depth, whatever the order
-- of its columns); TRUNCATE, DETACH and DROP of a partition score its rows as deleted, ATTACH as inserted.
-- After each step the live scores and stages equal a recompute (1.4 missed every direct write).
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id text, employees int, region text NOT NULL) PARTITION BY LIST (region);
CREATE TABLE crm.lead_eu PARTITION OF crm.lead FOR VALUES IN ('eu');
CREATE TABLE crm.lead_us PARTITION OF crm.lead FOR VALUES IN ('us');
-- Events by month, the current year's months by kind below that (two levels).
CREATE TABLE crm.activity (lead_id text, kind text, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE crm.act_2025 PARTITION OF crm.activity FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE crm.act_2026 PARTITION OF crm.activity FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
  PARTITION BY LIST (kind);
CREATE TABLE crm.act_2026_web PARTITION OF crm.act_2026 FOR VALUES IN ('webinar');
CREATE TABLE crm.act_2026_other PARTITION OF crm.act_2026 DEFAULT;
INSERT INTO leadscore.model (name, half_life) VALUES ('m', '30 days');
SELECT leadscore.track_leads('m', 'crm.lead', 'id');
SELECT leadscore.track_events('m', 'crm.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('m', 'big', 'crm.lead', 'employees >= 100', 10),
  ('m', 'webinar', 'crm.activity', $$kind = 'webinar'$$, 15),
  ('m', 'demo', 'crm.activity', $$kind = 'demo'$$, 40);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('m', 'cold', '-Infinity'), ('m', 'MQL', 30);
-- leadscore's triggers: on the tracked tables and on every partition, at every depth.
SELECT tgrelid::regclass AS "table", string_agg(tgname, ' ' ORDER BY tgname) AS triggers
  FROM pg_trigger WHERE tgname LIKE 'leadscore%' GROUP BY 1 ORDER BY 1::text;

-- Live scores and stages against a from-scratch recompute (rolled back), at two instants (some events are
-- dated 2027): the number of (lead, instant) pairs that differ.
CREATE FUNCTION differences() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	CREATE TEMP TABLE live ON COMMIT DROP AS
	  SELECT i, s.* FROM unnest(ARRAY['2026-06-01', '2028-06-01']::timestamptz[]) i, leadscore.scores_at('m', i) s;
	BEGIN
		PERFORM leadscore.recompute('m');
		SELECT count(*) INTO n FROM live l FULL JOIN
		  (SELECT i, s.* FROM unnest(ARRAY['2026-06-01', '2028-06-01']::timestamptz[]) i, leadscore.scores_at('m', i) s) r
		  USING (i, lead)
		 WHERE l.score IS DISTINCT FROM r.score OR l.stage IS DISTINCT FROM r.stage;
		RAISE EXCEPTION USING ERRCODE = 'P0004';
	EXCEPTION WHEN assert_failure THEN
	END;
	DROP TABLE live;
	RETURN n;
END
$$;
CREATE FUNCTION scores() RETURNS TABLE (lead text, score numeric, stage text) LANGUAGE sql AS $$
	SELECT lead, round(score::numeric, 6), stage FROM leadscore.scores_at('m', '2026-06-01') ORDER BY lead
$$;

-- Rows through the partitioned tables, and straight into partitions of each level.
INSERT INTO crm.lead VALUES ('a', 150, 'eu'), ('b', 20, 'us'), ('c', 5, 'eu');
INSERT INTO crm.lead_us VALUES ('d', 500, 'us');
INSERT INTO crm.activity VALUES ('a', 'webinar', '2026-05-01'), ('b', 'demo', '2026-05-02');
INSERT INTO crm.act_2026 VALUES ('c', 'webinar', '2026-05-03');
INSERT INTO crm.act_2026_other VALUES ('d', 'demo', '2026-05-04'), ('c', 'demo', '2026-05-05');
INSERT INTO crm.act_2025 VALUES ('a', 'demo', '2025-12-01');
SELECT * FROM scores();
SELECT differences() AS "direct writes";
-- Updates that move rows across partitions (through the parent), and in a partition.
UPDATE crm.activity SET kind = 'webinar' WHERE lead_id = 'b';
UPDATE crm.lead SET region = 'eu' WHERE id = 'b';
UPDATE crm.act_2026_web SET at = at - interval '10 days' WHERE lead_id = 'a';
UPDATE crm.lead_eu SET employees = 200 WHERE id = 'c';
DELETE FROM crm.act_2026_other WHERE lead_id = 'c';
SELECT differences() AS "updates and deletes";
SELECT lead, from_stage, to_stage FROM leadscore.stage_changes WHERE model = 'm' ORDER BY id;

-- TRUNCATE of a partition (a leaf, and a partitioned one): its rows scored as deleted; of the whole table.
TRUNCATE crm.act_2026_other;
SELECT differences() AS "truncate a leaf";
INSERT INTO crm.activity VALUES ('d', 'demo', '2026-05-06'), ('a', 'webinar', '2026-05-07');
TRUNCATE crm.act_2026;
SELECT differences() AS "truncate a partitioned partition";
SELECT * FROM scores();
INSERT INTO crm.activity VALUES ('d', 'demo', '2026-05-06'), ('a', 'webinar', '2026-05-07');
TRUNCATE crm.lead_us;
SELECT differences() AS "truncate a lead partition";
INSERT INTO crm.lead VALUES ('b', 20, 'us'), ('d', 500, 'us');

-- A partition created later, and one attached with its rows (its columns in another order, one dropped).
CREATE TABLE crm.act_2024 PARTITION OF crm.activity FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO crm.act_2024 VALUES ('b', 'demo', '2024-06-01');
CREATE TABLE crm.act_2027 (note text, at timestamptz NOT NULL, kind text, lead_id text);
ALTER TABLE crm.act_2027 DROP COLUMN note;
INSERT INTO crm.act_2027 VALUES ('2027-01-02', 'demo', 'c'), ('2027-01-03', 'webinar', 'b');
ALTER TABLE crm.activity ATTACH PARTITION crm.act_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
SELECT differences() AS "created and attached";
INSERT INTO crm.act_2027 VALUES ('2027-02-01', 'demo', 'a');
UPDATE crm.act_2027 SET kind = 'demo' WHERE lead_id = 'b';
SELECT differences() AS "writes into the attached partition";
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('m', '2027-03-01') ORDER BY lead;

-- DETACH: the rows scored as deleted, the detached table's triggers gone, its later writes not scored.
ALTER TABLE crm.activity DETACH PARTITION crm.act_2027;
SELECT differences() AS "detached";
SELECT count(*) AS "triggers left on the detached table" FROM pg_trigger
 WHERE tgrelid = 'crm.act_2027'::regclass AND tgname LIKE 'leadscore%';
INSERT INTO crm.act_2027 VALUES ('2027-02-02', 'demo', 'a');
SELECT differences() AS "write into the detached table";
ALTER TABLE crm.activity DETACH PARTITION crm.act_2024 CONCURRENTLY;  -- refused

-- DROP of a partition: its rows scored as deleted. Rolled back: nothing changed. Refused (a view needs
-- it): nothing changed.
CREATE TEMP TABLE before AS SELECT * FROM scores();
BEGIN;
DROP TABLE crm.act_2025;
SELECT differences() AS "dropped, in the transaction";
ROLLBACK;
SELECT count(*) AS "changed by the rolled back drop" FROM before b FULL JOIN scores() s USING (lead)
 WHERE b.score IS DISTINCT FROM s.score;
CREATE VIEW crm.old_events AS SELECT * FROM crm.act_2025;
DROP TABLE crm.act_2025;  -- refused by PostgreSQL (the view)
SELECT count(*) AS "changed by the refused drop" FROM before b FULL JOIN scores() s USING (lead)
 WHERE b.score IS DISTINCT FROM s.score;
DROP VIEW crm.old_events;
DROP TABLE crm.act_2025;
SELECT differences() AS "dropped";
-- A partition dropped with its schema, and one with its owner's objects.
CREATE SCHEMA archive;
CREATE TABLE archive.act_2023 PARTITION OF crm.activity FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
INSERT INTO archive.act_2023 VALUES ('a', 'demo', '2023-12-30'), ('d', 'webinar', '2023-12-31');
SELECT differences() AS "partition in another schema";
DROP SCHEMA archive CASCADE;
SELECT differences() AS "dropped with its schema";
CREATE ROLE partition_owner;
GRANT CREATE, USAGE ON SCHEMA crm TO partition_owner;
CREATE TABLE crm.act_2022 (lead_id text, kind text, at timestamptz NOT NULL);
INSERT INTO crm.act_2022 VALUES ('b', 'demo', '2022-12-30');
ALTER TABLE crm.activity ATTACH PARTITION crm.act_2022 FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
ALTER TABLE crm.act_2022 OWNER TO partition_owner;
SELECT differences() AS "attached, another owner";
DROP OWNED BY partition_owner;
SELECT to_regclass('crm.act_2022') AS "dropped by DROP OWNED", differences() AS "differences";
DROP ROLE partition_owner;
SELECT * FROM scores();

-- Several leaves at once, one lead's events in each (their rows are scored as one statement: a lead's
-- rebuild must not count a leaf's rows twice): a partitioned partition truncated, detached, attached back,
-- dropped; two leaves in one TRUNCATE; a partition truncated with another tracked table of the model (which
-- recomputes it); partitions of the lead and the event table dropped with their schema.
INSERT INTO crm.activity VALUES ('a', 'webinar', '2026-05-01'), ('a', 'demo', '2026-05-02'),
  ('a', 'webinar', '2026-05-03'), ('a', 'demo', '2024-07-05'), ('a', 'webinar', '2024-08-01');
SELECT differences() AS "one lead in every leaf";
TRUNCATE crm.act_2026;
SELECT differences() AS "truncate of two leaves with one lead";
INSERT INTO crm.activity VALUES ('a', 'webinar', '2026-05-01'), ('a', 'demo', '2026-05-02');
ALTER TABLE crm.activity DETACH PARTITION crm.act_2026;
SELECT differences() AS "detach of two leaves";
ALTER TABLE crm.activity ATTACH PARTITION crm.act_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT differences() AS "attach of two leaves";
TRUNCATE crm.act_2026_web, crm.act_2026_other;
SELECT differences() AS "two leaves in one TRUNCATE";
INSERT INTO crm.activity VALUES ('a', 'webinar', '2026-05-01'), ('a', 'demo', '2026-05-02');
CREATE TABLE crm.note (lead_id text, kind text);
INSERT INTO leadscore.model (name) VALUES ('m2');
SELECT leadscore.track_leads('m2', 'crm.lead', 'id'), leadscore.track_events('m2', 'crm.activity', 'lead_id', 'at'),
       leadscore.track_events('m2', 'crm.note', 'lead_id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('m2', 'any', 'crm.activity', 'true', 10), ('m2', 'call', 'crm.note', $$kind = 'call'$$, 1);
INSERT INTO crm.note VALUES ('a', 'call');
CREATE TEMP TABLE m2_before AS SELECT lead, score FROM leadscore.scores_at('m2', '2026-06-01');
TRUNCATE crm.note, crm.act_2026;
SELECT lead, score FROM leadscore.scores_at('m2', '2026-06-01') ORDER BY lead;
SELECT differences() AS "a partition with another table";
CREATE SCHEMA archive;
CREATE TABLE archive.lead_apac PARTITION OF crm.lead FOR VALUES IN ('apac');
CREATE TABLE archive.act_2021 PARTITION OF crm.activity FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
INSERT INTO crm.lead VALUES ('f', 300, 'apac');
INSERT INTO crm.activity VALUES ('f', 'demo', '2021-06-01'), ('a', 'demo', '2021-06-02');
SELECT differences() AS "lead and event partitions in one schema";
DROP SCHEMA archive CASCADE;
SELECT differences() AS "both dropped with their schema";
DELETE FROM leadscore.model WHERE name = 'm2';

-- A TRUNCATE of the tracked table: one recompute.
TRUNCATE crm.activity;
SELECT differences() AS "truncate the tracked table";

-- Refused: tracking a partition; attaching a tracked table; tracking a table with a tracked partition.
SELECT leadscore.track_events('m', 'crm.act_2026_web', 'lead_id', 'at');
INSERT INTO leadscore.model (name) VALUES ('other');
CREATE TABLE crm.lead_apac (id text, employees int, region text NOT NULL);
SELECT leadscore.track_leads('other', 'crm.lead_apac', 'id');
ALTER TABLE crm.lead ATTACH PARTITION crm.lead_apac FOR VALUES IN ('apac');
SELECT leadscore.untrack('other', 'crm.lead_apac');
ALTER TABLE crm.lead ATTACH PARTITION crm.lead_apac FOR VALUES IN ('apac');
INSERT INTO crm.lead_apac VALUES ('e', 1000, 'apac');
SELECT differences() AS "attached after untracking";

-- Untracking the partitioned table takes the triggers off every partition.
SELECT leadscore.untrack('m', 'crm.activity', true);
SELECT count(*) AS "triggers left on the event partitions" FROM pg_trigger g
  JOIN pg_partition_tree('crm.activity') p ON p.relid = g.tgrelid WHERE g.tgname LIKE 'leadscore%';
DROP EXTENSION leadscore;
SELECT count(*) AS "triggers left" FROM pg_trigger WHERE tgname LIKE 'leadscore%';
DROP SCHEMA crm CASCADE;
