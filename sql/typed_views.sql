-- Typed views of the history (1.6): stage_changes_<key>, engagement_resets_<key>, rfm_segments_<key> and
-- score_snapshots_<key> give the lead of its own type, so that a join to the CRM's lead table needs no
-- cast; the score, snapshot and history views give a stage's rank; a reader sees in them the rows it sees
-- in the views over every key type; every column of the views and configuration tables has a comment.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
-- Three models, one per key type: bigint, uuid and varchar (kept as text).
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, region text);
CREATE TABLE crm.visit (lead bigint, at timestamptz NOT NULL);
CREATE TABLE crm.person (id uuid PRIMARY KEY, name text);
CREATE TABLE crm.account (code varchar(10) PRIMARY KEY, name text);
INSERT INTO leadscore.model (name) VALUES ('b'), ('u'), ('t');
SELECT leadscore.track_leads('b', 'crm.lead', 'id'), leadscore.track_events('b', 'crm.visit', 'lead', 'at'),
       leadscore.track_leads('u', 'crm.person', 'id'), leadscore.track_leads('t', 'crm.account', 'code');
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, r.name, t, r.condition, r.points
  FROM (VALUES ('b', 'crm.lead'), ('u', 'crm.person'), ('t', 'crm.account')) AS x (m, t),
       (VALUES ('big', $$name LIKE 'big%'$$, 60), ('any', 'true', 25), ('spam', $$name LIKE 'spam%'$$, -50)) AS r (name, condition, points);
-- Stages written out of order: the rank follows min_score (1 = the lowest), not the name or the order written.
INSERT INTO leadscore.stage (model, name, min_score)
SELECT m, s.name, s.min_score FROM unnest(ARRAY['b', 'u', 't']) AS m,
       (VALUES ('MQL', 50::float8), ('cold', '-Infinity'), ('warm', 20)) AS s (name, min_score);
INSERT INTO crm.lead SELECT g, CASE g % 3 WHEN 0 THEN 'big ' WHEN 1 THEN 'small ' ELSE 'spam ' END || g,
                            CASE WHEN g % 2 = 0 THEN 'east' ELSE 'west' END
  FROM generate_series(1, 3000) g;
INSERT INTO crm.visit VALUES (1, '2026-02-01'), (2, '2026-02-02'), (2, '2026-02-03');
INSERT INTO crm.person VALUES ('00000000-0000-0000-0000-000000000001', 'big one'), ('00000000-0000-0000-0000-000000000002', 'small');
INSERT INTO crm.account VALUES ('A1', 'big one'), ('B2', 'small');
-- A second stage change: warm to MQL.
UPDATE crm.lead SET name = 'big 1' WHERE id = 1;
UPDATE crm.person SET name = 'big two' WHERE name = 'small';
UPDATE crm.account SET name = 'big two' WHERE code = 'B2';
SELECT leadscore.reset('b', '1', '2026-02-15', 'deal lost') IS NOT NULL AS reset,
       leadscore.reset('b', '2', '2026-02-16', 'moved') IS NOT NULL AS reset;
SELECT leadscore.refresh_rfm('b', '90 days', NULL, '2026-03-01') IS NOT NULL AS rfm;
SELECT leadscore.snapshot(day => '2026-03-01') AS snapshot_rows;
ANALYZE crm.lead, leadscore.stage_change_int8, leadscore.model, leadscore.score_snapshot;

-- bigint: the join needs no cast (the view over every key type gives the lead as text and does).
SELECT l.id, l.name, c.model, c.from_stage, c.to_stage, c.from_rank, c.to_rank
  FROM crm.lead l JOIN leadscore.stage_changes_int8 c ON c.lead = l.id WHERE l.id IN (1, 2, 3) ORDER BY l.id, c.id;
SELECT count(*) FROM crm.lead l JOIN leadscore.stage_changes c ON c.lead = l.id;
SELECT l.id, s.day, s.score, s.stage, s.stage_rank
  FROM crm.lead l JOIN leadscore.score_snapshots_int8 s ON s.lead = l.id WHERE l.id IN (1, 2, 3) ORDER BY l.id;
SELECT l.id, r.reset_at, r.reason FROM crm.lead l JOIN leadscore.engagement_resets_int8 r ON r.lead = l.id ORDER BY l.id;
SELECT l.id, r.frequency, r.r, r.f, r.code
  FROM crm.lead l JOIN leadscore.rfm_segments_int8 r ON r.lead = l.id WHERE l.id IN (1, 2) ORDER BY l.id;
-- uuid and text (a varchar key).
SELECT p.name, c.from_stage, c.to_stage, c.to_rank
  FROM crm.person p JOIN leadscore.stage_changes_uuid c ON c.lead = p.id ORDER BY p.id, c.id;
SELECT p.name, s.stage, s.stage_rank FROM crm.person p JOIN leadscore.score_snapshots_uuid s ON s.lead = p.id ORDER BY p.id;
SELECT p.name, s.score, s.stage_rank FROM crm.person p JOIN leadscore.scores_uuid s ON s.lead = p.id ORDER BY p.id;
SELECT a.code, c.from_stage, c.to_stage, c.to_rank
  FROM crm.account a JOIN leadscore.stage_changes_text c ON c.lead = a.code ORDER BY a.code, c.id;
SELECT a.code, s.stage, s.stage_rank FROM crm.account a JOIN leadscore.score_snapshots_text s ON s.lead = a.code ORDER BY a.code;

-- A typed view has the rows of its view over every key type that are of its key type, and no others.
SELECT (SELECT count(*) FROM (
	        SELECT id, model, lead, from_stage, to_stage, score, changed_at, from_rank, to_rank FROM leadscore.stage_changes
	        EXCEPT ALL
	        (SELECT id, model, lead::text, from_stage, to_stage, score, changed_at, from_rank, to_rank FROM leadscore.stage_changes_int4
	         UNION ALL SELECT id, model, lead::text, from_stage, to_stage, score, changed_at, from_rank, to_rank FROM leadscore.stage_changes_int8
	         UNION ALL SELECT id, model, lead::text, from_stage, to_stage, score, changed_at, from_rank, to_rank FROM leadscore.stage_changes_uuid
	         UNION ALL SELECT id, model, lead, from_stage, to_stage, score, changed_at, from_rank, to_rank FROM leadscore.stage_changes_text)) x
       ) AS stage_changes_not_in_typed,
       (SELECT count(*) FROM (
	        SELECT day, model, lead, score, stage, stage_rank FROM leadscore.score_snapshots
	        EXCEPT ALL
	        (SELECT day, model, lead::text, score, stage, stage_rank FROM leadscore.score_snapshots_int4
	         UNION ALL SELECT day, model, lead::text, score, stage, stage_rank FROM leadscore.score_snapshots_int8
	         UNION ALL SELECT day, model, lead::text, score, stage, stage_rank FROM leadscore.score_snapshots_uuid
	         UNION ALL SELECT day, model, lead, score, stage, stage_rank FROM leadscore.score_snapshots_text)) x
       ) AS snapshots_not_in_typed;
SELECT (SELECT count(*) FROM leadscore.stage_changes) AS stage_changes,
       (SELECT count(*) FROM leadscore.stage_changes_int4) + (SELECT count(*) FROM leadscore.stage_changes_int8)
       + (SELECT count(*) FROM leadscore.stage_changes_uuid) + (SELECT count(*) FROM leadscore.stage_changes_text) AS typed,
       (SELECT count(*) FROM leadscore.score_snapshots) AS snapshots,
       (SELECT count(*) FROM leadscore.score_snapshots_int4) + (SELECT count(*) FROM leadscore.score_snapshots_int8)
       + (SELECT count(*) FROM leadscore.score_snapshots_uuid) + (SELECT count(*) FROM leadscore.score_snapshots_text) AS typed_snapshots;
SELECT 'int8' AS view, model, count(*) FROM leadscore.score_snapshots_int8 GROUP BY model
UNION ALL SELECT 'uuid', model, count(*) FROM leadscore.score_snapshots_uuid GROUP BY model
UNION ALL SELECT 'text', model, count(*) FROM leadscore.score_snapshots_text GROUP BY model
UNION ALL SELECT 'int4', model, count(*) FROM leadscore.score_snapshots_int4 GROUP BY model ORDER BY 1, 2;

-- score_snapshot keeps every model's lead as text: a snapshot row whose lead is not of its model's key type
-- now (such as one written when the model had another key type) is left out of the typed view, and a
-- condition on the typed lead never fails on it (the cast is guarded).
INSERT INTO leadscore.score_snapshot (day, model, lead, score, fit, engagement, taken_at) VALUES
	('2026-03-02', 'b', 'x-1', 0, 0, 0, '2026-03-02'), ('2026-03-02', 'b', '99999999999999999999', 0, 0, 0, '2026-03-02'),
	('2026-03-02', 'u', 'not-a-uuid', 0, 0, 0, '2026-03-02'), ('2026-03-02', 'b', '7', 0, 0, 0, '2026-03-02');
SELECT day, lead FROM leadscore.score_snapshots_int8 WHERE lead = 7 ORDER BY day;
SELECT count(*) FROM leadscore.score_snapshots_uuid WHERE lead = '00000000-0000-0000-0000-000000000001';
SELECT (SELECT count(*) FROM leadscore.score_snapshot WHERE day = '2026-03-02') AS rows,
       (SELECT count(*) FROM leadscore.score_snapshots_int8 WHERE day = '2026-03-02') AS int8_view,
       (SELECT count(*) FROM leadscore.score_snapshots_uuid WHERE day = '2026-03-02') AS uuid_view;
-- The view over every key type leaves them out too, rather than failing for every reader (1.6: its filter
-- read such a lead with the model's key type and raised an error).
SELECT lead FROM leadscore.score_snapshots WHERE day = '2026-03-02' ORDER BY lead;
DELETE FROM leadscore.score_snapshot WHERE day = '2026-03-02';

-- A stage's order: ORDER BY stage_rank sorts cold, warm, MQL (by min_score), in every score view.
SELECT stage_rank, stage, count(*) FROM leadscore.scores WHERE model = 'b' GROUP BY 1, 2 ORDER BY 1;
SELECT stage_rank, stage, count(*) FROM leadscore.scores_int8 WHERE model = 'b' GROUP BY 1, 2 ORDER BY 1;
SELECT stage_rank, stage, count(*) FROM leadscore.score_snapshots_int8 WHERE model = 'b' GROUP BY 1, 2 ORDER BY 1;
SELECT to_rank, to_stage, count(*) FROM leadscore.stage_changes WHERE model = 'b' GROUP BY 1, 2 ORDER BY 1;
SELECT stage, stage_rank, leads, converted FROM leadscore.conversion_by_stage('b', 'SELECT id, id % 3 = 0 FROM crm.lead');
-- The rank is the stage's among the model's current stages: a new lowest band moves the others up.
UPDATE leadscore.stage SET min_score = -100 WHERE model = 'u' AND name = 'cold';
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('u', 'lost', '-Infinity');
SELECT from_stage, from_rank, to_stage, to_rank FROM leadscore.stage_changes_uuid ORDER BY id;
SELECT stage, stage_rank FROM leadscore.scores_uuid ORDER BY lead;

-- Joins on the typed lead use the history's index (model_id, lead, changed_at), one probe per model: a
-- condition on the lead table's key reaches the view (security_barrier lets an equality on the lead through,
-- a leakproof operator), as does LATERAL ... OFFSET 0 for any other condition.
EXPLAIN (COSTS OFF)
SELECT l.name, c.to_stage FROM crm.lead l JOIN leadscore.stage_changes_int8 c ON c.lead = l.id WHERE l.id = 42;
EXPLAIN (COSTS OFF)
SELECT l.name, c.to_stage FROM crm.lead l
 CROSS JOIN LATERAL (SELECT * FROM leadscore.stage_changes_int8 c WHERE c.lead = l.id OFFSET 0) c WHERE l.name = 'big 42';

-- Readers see in the typed views the leads they see in the CRM (here, under a row-level security policy),
-- as in the views over every key type; a reader reads the stage changes and snapshots, an admin also
-- the engagement resets and RFM segments.
CREATE ROLE regress_typed_reader;
CREATE ROLE regress_typed_admin;
ALTER TABLE crm.lead ENABLE ROW LEVEL SECURITY;
CREATE POLICY east ON crm.lead USING (region = 'east');
GRANT USAGE ON SCHEMA crm TO regress_typed_reader, regress_typed_admin;
GRANT SELECT ON crm.lead, crm.person, crm.account TO regress_typed_reader, regress_typed_admin;
SELECT leadscore.grant_profile('reader', 'regress_typed_reader'), leadscore.grant_profile('admin', 'regress_typed_admin');
SET ROLE regress_typed_reader;
SELECT lead, to_stage FROM leadscore.stage_changes_int8 WHERE lead <= 4 ORDER BY id;
SELECT lead, to_stage FROM leadscore.stage_changes WHERE model = 'b' AND lead IN ('1', '2', '3', '4') ORDER BY id;
SELECT l.id, c.to_stage FROM crm.lead l JOIN leadscore.stage_changes_int8 c ON c.lead = l.id WHERE l.id <= 4 ORDER BY c.id;
SELECT lead, stage FROM leadscore.score_snapshots_int8 WHERE lead <= 4 ORDER BY lead;
SELECT count(*) FILTER (WHERE lead % 2 = 0) AS east, count(*) FILTER (WHERE lead % 2 = 1) AS west
  FROM leadscore.score_snapshots_int8;
SELECT count(*) FROM leadscore.stage_changes_uuid;
SELECT count(*) FROM leadscore.engagement_resets_int8;
SELECT count(*) FROM leadscore.rfm_segments_int8;
RESET ROLE;
SET ROLE regress_typed_admin;
SELECT lead, reason FROM leadscore.engagement_resets_int8 ORDER BY lead;
SELECT lead, code FROM leadscore.rfm_segments_int8 WHERE lead <= 4 ORDER BY lead;
RESET ROLE;
SELECT lead, reason FROM leadscore.engagement_resets_int8 ORDER BY lead;
SELECT lead, code FROM leadscore.rfm_segments_int8 WHERE lead <= 4 ORDER BY lead;

-- Privileges (1.4): nothing is PUBLIC's; each typed view is granted with its view over every key type.
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = 'leadscore'::regnamespace AND c.relkind = 'v' AND has_table_privilege('public', c.oid, 'SELECT');
SELECT regexp_replace(c.relname, '_(int4|int8|uuid|text)$', '_<key>') AS view, count(*) AS key_types,
       bool_and(has_table_privilege('regress_typed_reader', c.oid, 'SELECT')) AS reader,
       bool_and(has_table_privilege('regress_typed_admin', c.oid, 'SELECT')) AS admin
  FROM pg_class c
 WHERE c.relnamespace = 'leadscore'::regnamespace AND c.relkind = 'v'
   AND c.relname ~ '^(stage_changes|engagement_resets|rfm_segments|score_snapshots|scores)_(int4|int8|uuid|text)$'
 GROUP BY 1 ORDER BY 1;

-- Every column of every view and configuration table has a comment (what BI tools show per field).
SELECT c.relname, a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'leadscore'::regnamespace
   AND (c.relkind = 'v' OR c.relname IN ('model', 'tracked_table', 'category', 'rule', 'stage', 'grade_band',
                                         'inactivity_rule', 'predictive_model', 'predictive_term'))
   AND col_description(c.oid, a.attnum) IS NULL
 ORDER BY 1, 2;

SELECT leadscore.revoke_profile('reader', 'regress_typed_reader'), leadscore.revoke_profile('admin', 'regress_typed_admin');
DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
DROP ROLE regress_typed_reader;
DROP ROLE regress_typed_admin;
