-- Drafts of models (leadscore.draft, preview, publish): a draft is a copy of a live model's configuration,
-- edited without touching the live scores; preview scores it from scratch and counts how it would move the
-- leads between stages; publish puts it live in one rescoring (stage changes recorded at that instant, the
-- live scores then equal a recompute), and the draft takes the old configuration (publish again: rollback).
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
\set VERBOSITY terse
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY, country text, employees int);
CREATE TABLE crm.touch (lead int, kind text, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life, description) VALUES ('saas', '30 days', 'the live one');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id'), leadscore.track_events('saas', 'crm.touch', 'lead', 'at');
INSERT INTO leadscore.category (model, name, cap) VALUES ('saas', 'web', 30);
INSERT INTO leadscore.rule (model, name, source, condition, points, category) VALUES
	('saas', 'big', 'crm.lead', 'employees >= 100', 20, NULL),
	('saas', 'visit', 'crm.touch', $$kind = 'visit'$$, 10, 'web'),
	('saas', 'demo', 'crm.touch', $$kind = 'demo'$$, 40, NULL);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'MQL', 50);
INSERT INTO leadscore.grade_band (model, axis, name, min_score) VALUES ('saas', 'fit', 'A', 20), ('saas', 'fit', 'B', '-Infinity');
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('saas', 'idle', '90 days', -5);
INSERT INTO crm.lead SELECT i, 'FR', i * 10 FROM generate_series(1, 20) i;
INSERT INTO crm.touch SELECT i, 'demo', now() FROM generate_series(1, 20) i WHERE i % 2 = 0;
INSERT INTO crm.touch SELECT i, 'visit', now() FROM generate_series(1, 20) i WHERE i % 3 = 0;
CREATE TEMP TABLE live_before AS SELECT lead, score, stage FROM leadscore.scores_at('saas');
SELECT stage, count(*) FROM live_before GROUP BY stage ORDER BY stage;

-- A draft: the whole configuration copied (every column of every configuration table), no states.
SELECT leadscore.draft('saas');
SELECT name, draft_of, half_life, description FROM leadscore.model ORDER BY id;
SELECT (SELECT count(*) FROM leadscore.rule WHERE model = 'saas_draft') AS rules,
       (SELECT count(*) FROM leadscore.tracked_table WHERE model = 'saas_draft') AS tracked,
       (SELECT count(*) FROM leadscore.stage WHERE model = 'saas_draft') AS stages,
       (SELECT count(*) FROM leadscore.grade_band WHERE model = 'saas_draft') AS bands,
       (SELECT count(*) FROM leadscore.inactivity_rule WHERE model = 'saas_draft') AS steps,
       (SELECT count(*) FROM leadscore.category WHERE model = 'saas_draft') AS categories;
SELECT count(*) AS differences FROM (
	(SELECT name, source, condition, points, cap, category, once_per_lead, enabled, predictor, max_per_period, period, author
	   FROM leadscore.rule WHERE model = 'saas'
	 EXCEPT SELECT name, source, condition, points, cap, category, once_per_lead, enabled, predictor, max_per_period, period, author
	   FROM leadscore.rule WHERE model = 'saas_draft')
	UNION ALL
	(SELECT name, source, condition, points, cap, category, once_per_lead, enabled, predictor, max_per_period, period, author
	   FROM leadscore.rule WHERE model = 'saas_draft'
	 EXCEPT SELECT name, source, condition, points, cap, category, once_per_lead, enabled, predictor, max_per_period, period, author
	   FROM leadscore.rule WHERE model = 'saas')) d;
SELECT count(*) AS draft_states FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
 WHERE m.name = 'saas_draft';

-- Edits of the draft leave the live scores alone (no rescoring, no history); new leads and events are
-- scored by the live model only.
UPDATE leadscore.rule SET points = 60 WHERE model = 'saas_draft' AND name = 'demo';
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('saas_draft', 'france', 'crm.lead', $$country = 'FR'$$, 5);
UPDATE leadscore.stage SET min_score = 45 WHERE model = 'saas_draft' AND name = 'MQL';
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas_draft', 'SQL', 80);
UPDATE leadscore.model SET half_life = '60 days' WHERE name = 'saas_draft';
INSERT INTO crm.lead VALUES (21, 'DE', 5000);
INSERT INTO crm.touch VALUES (21, 'demo', now());
SELECT count(*) AS live_changed FROM leadscore.scores_at('saas') s JOIN live_before b USING (lead)
 WHERE abs(s.score - b.score) > 1e-6 OR s.stage IS DISTINCT FROM b.stage;
SELECT count(*) AS draft_states FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
 WHERE m.name = 'saas_draft';
SELECT count(*) AS draft_history FROM leadscore.stage_changes WHERE model = 'saas_draft';
SELECT count(*) FROM leadscore.scores_at('saas_draft');

-- preview: per pair (stage now, stage under the draft), the leads; it writes nothing.
SELECT * FROM leadscore.preview('saas_draft');
SELECT count(*) AS draft_states FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id
 WHERE m.name = 'saas_draft';

-- Mistakes: clear errors.
SELECT leadscore.draft('nope');
SELECT leadscore.draft('saas_draft');
SELECT leadscore.draft('saas', 'saas_draft');
SELECT leadscore.draft(NULL);
SELECT * FROM leadscore.preview('saas');
SELECT leadscore.publish('saas');
SELECT leadscore.publish('nope');
SELECT leadscore.recompute('saas_draft');
UPDATE leadscore.model SET draft_of = 'saas' WHERE name = 'saas';
UPDATE leadscore.model SET draft_of = NULL WHERE name = 'saas_draft';
INSERT INTO leadscore.model (name, draft_of) VALUES ('draft2', 'saas_draft');
INSERT INTO leadscore.model (name) VALUES ('other');
UPDATE leadscore.model SET draft_of = 'saas' WHERE name = 'other';
DELETE FROM leadscore.model WHERE name = 'other';
-- A draft that tracks other tables cannot be published.
CREATE TABLE crm.extra (lead int, at timestamptz);
SELECT leadscore.track_events('saas_draft', 'crm.extra', 'lead', 'at');
SELECT leadscore.publish('saas_draft');
SELECT leadscore.untrack('saas_draft', 'crm.extra');

-- publish: the live model takes the draft's configuration in one rescoring; its scores equal a recompute;
-- the stage changes it causes are recorded at this instant, once; the draft holds the old configuration.
CREATE TEMP TABLE history_before AS SELECT count(*) AS n FROM leadscore.stage_changes WHERE model = 'saas';
CREATE TEMP TABLE stages_before AS SELECT lead, stage FROM leadscore.scores_at('saas');
CREATE TEMP TABLE previewed AS SELECT * FROM leadscore.preview('saas_draft');
BEGIN;
SELECT leadscore.publish('saas_draft');
CREATE TEMP TABLE published_at AS SELECT now() AS at;
COMMIT;
SELECT name, draft_of, half_life, description FROM leadscore.model ORDER BY name;
SELECT model, name, points FROM leadscore.rule ORDER BY model, name;
SELECT model, name, min_score FROM leadscore.stage ORDER BY model, min_score;
SELECT stage, count(*) FROM leadscore.scores_at('saas') GROUP BY stage ORDER BY stage;
-- What preview said is what publish did.
SELECT count(*) AS preview_differs FROM (
	(SELECT b.stage AS from_stage, s.stage AS to_stage, count(*) AS leads
	   FROM leadscore.scores_at('saas') s JOIN stages_before b USING (lead) GROUP BY 1, 2
	 EXCEPT SELECT * FROM previewed)
	UNION ALL
	(SELECT * FROM previewed
	 EXCEPT SELECT b.stage, s.stage, count(*) FROM leadscore.scores_at('saas') s JOIN stages_before b USING (lead) GROUP BY 1, 2)) d;
-- Each change recorded once, at publish's instant: 6 MQL to SQL, 4 cold to MQL.
SELECT from_stage, to_stage, count(*), bool_and(changed_at = (SELECT at FROM published_at)) AS at_publish
  FROM leadscore.stage_changes WHERE model = 'saas' AND id > (SELECT max(id) FROM leadscore.stage_changes) - 10
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) - (SELECT n FROM history_before) AS recorded FROM leadscore.stage_changes WHERE model = 'saas';
CREATE TEMP TABLE live_after AS SELECT lead, score, stage FROM leadscore.scores_at('saas');
SELECT leadscore.recompute('saas');
SELECT count(*) AS differs_from_recompute FROM leadscore.scores_at('saas') s JOIN live_after a USING (lead)
 WHERE abs(s.score - a.score) > 1e-6 OR s.stage IS DISTINCT FROM a.stage;
-- The live model keeps scoring with the new configuration.
INSERT INTO crm.touch VALUES (1, 'demo', now());
SELECT lead, round(score::numeric, 2) AS score, stage FROM leadscore.scores_at('saas') WHERE lead IN ('1', '2') ORDER BY lead;

-- Rollback: publishing the draft again puts the old configuration back.
SELECT leadscore.publish('saas_draft');
SELECT name, draft_of, half_life FROM leadscore.model ORDER BY name;
SELECT model, name, points FROM leadscore.rule ORDER BY model, name;
SELECT count(*) AS differs_from_before FROM leadscore.scores_at('saas') s JOIN live_before b USING (lead)
 WHERE s.lead <> '1' AND (abs(s.score - b.score) > 1e-4 OR s.stage IS DISTINCT FROM b.stage);

-- Authors: a copy keeps each rule's author (the condition runs with the rights of whoever wrote it).
CREATE ROLE ls_drafts_editor;
SELECT leadscore.grant_profile('admin', 'ls_drafts_editor');
GRANT USAGE ON SCHEMA crm TO ls_drafts_editor;
GRANT SELECT ON crm.lead, crm.touch TO ls_drafts_editor;
SET ROLE ls_drafts_editor;
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('saas_draft', 'mine', 'crm.lead', 'id > 100', 1);
SELECT leadscore.draft('saas', 'by_editor');
SELECT count(*) FILTER (WHERE author::text = 'ls_drafts_editor') AS editors, count(*) AS rules
  FROM leadscore.rule WHERE model = 'by_editor';
SELECT leadscore.publish('saas_draft') > 0 AS published;
SELECT name, author::text = 'ls_drafts_editor' AS editor FROM leadscore.rule WHERE model = 'saas' ORDER BY name;
SELECT count(*) > 0 AS previewed FROM leadscore.preview('saas_draft');
RESET ROLE;
-- A role without the admin profile may not copy a configuration.
CREATE ROLE ls_drafts_reader;
SELECT leadscore.grant_profile('reader', 'ls_drafts_reader');
SET ROLE ls_drafts_reader;
SELECT leadscore.draft('saas', 'by_reader');
SELECT leadscore.publish('saas_draft');
RESET ROLE;

-- publish_concurrently: the same publish while the model's writers go on (its states built beside the
-- live ones in short transactions, then swapped in); CALLed outside a transaction block. Its NOTICEs give
-- timings, hence client_min_messages.
UPDATE leadscore.rule SET points = 45 WHERE model = 'saas_draft' AND name = 'demo';
CREATE TEMP TABLE history_pc AS SELECT count(*) AS n FROM leadscore.stage_changes WHERE model = 'saas';
CREATE TEMP TABLE previewed_pc AS SELECT * FROM leadscore.preview('saas_draft');
SET client_min_messages = warning;
CALL leadscore.publish_concurrently('saas_draft');
RESET client_min_messages;
SELECT model, name, points FROM leadscore.rule WHERE name = 'demo' ORDER BY model;
-- Each stage move preview announced recorded once; nothing of the build left.
SELECT (SELECT coalesce(sum(leads), 0) FROM previewed_pc WHERE from_stage IS DISTINCT FROM to_stage)
     = (SELECT count(*) - (SELECT n FROM history_pc) FROM leadscore.stage_changes WHERE model = 'saas') AS moves_recorded;
SELECT (SELECT count(*) FROM leadscore.draft_build) AS builds, (SELECT count(*) FROM leadscore.draft_touch_int4) AS touched,
       (SELECT count(*) FROM leadscore.state_int4 s JOIN leadscore.model m ON m.state_id = s.model_id
         WHERE m.name = 'saas_draft') AS draft_states;
CREATE TEMP TABLE live_pc AS SELECT lead, score, stage FROM leadscore.scores_at('saas');
SELECT leadscore.recompute('saas');
SELECT count(*) AS differs_from_recompute FROM leadscore.scores_at('saas') s JOIN live_pc a USING (lead)
 WHERE abs(s.score - a.score) > 1e-6 OR s.stage IS DISTINCT FROM a.stage;
INSERT INTO crm.touch VALUES (2, 'demo', now());
SELECT count(*) AS touched FROM leadscore.draft_touch_int4;
-- Mistakes: clear errors, nothing changed.
BEGIN;
CALL leadscore.publish_concurrently('saas_draft');
ROLLBACK;
SELECT leadscore.publish_concurrently('saas_draft');
CALL leadscore.publish_concurrently('saas');
CALL leadscore.publish_concurrently('nope');
CALL leadscore.publish_concurrently(NULL);
SET ROLE ls_drafts_reader;
CALL leadscore.publish_concurrently('saas_draft');
RESET ROLE;
-- A build that fails (a draft's condition divides by zero for one lead) is removed: the writers stop
-- noting the leads they touch, the draft keeps no states, the live model is as it was.
UPDATE leadscore.rule SET condition = '100 / (employees - 50) > 0' WHERE model = 'saas_draft' AND name = 'big';
CREATE TEMP TABLE live_fail AS SELECT lead, score, stage FROM leadscore.scores_at('saas');
SET client_min_messages = warning;
CALL leadscore.publish_concurrently('saas_draft');
RESET client_min_messages;
SELECT (SELECT count(*) FROM leadscore.draft_build) AS builds, (SELECT count(*) FROM leadscore.draft_touch_int4) AS touched,
       (SELECT count(*) FROM leadscore.state_int4 s JOIN leadscore.model m ON m.state_id = s.model_id
         WHERE m.name = 'saas_draft') AS draft_states;
INSERT INTO crm.touch VALUES (3, 'visit', now());
SELECT count(*) AS touched FROM leadscore.draft_touch_int4;
SELECT count(*) AS live_changed FROM leadscore.scores_at('saas') s JOIN live_fail b USING (lead)
 WHERE s.lead <> '3' AND (abs(s.score - b.score) > 1e-6 OR s.stage IS DISTINCT FROM b.stage);
-- Fixed, it publishes; a role with the admin profile may publish concurrently.
UPDATE leadscore.rule SET condition = 'employees >= 100' WHERE model = 'saas_draft' AND name = 'big';
SET ROLE ls_drafts_editor;
SET client_min_messages = warning;
CALL leadscore.publish_concurrently('saas_draft');
RESET client_min_messages;
RESET ROLE;
SELECT model, name, points FROM leadscore.rule WHERE name = 'demo' ORDER BY model;

-- Deleting the live model deletes its drafts.
DELETE FROM leadscore.model WHERE name = 'saas';
SELECT name FROM leadscore.model ORDER BY name;

DROP OWNED BY ls_drafts_editor, ls_drafts_reader;
DROP ROLE ls_drafts_editor, ls_drafts_reader;
DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
