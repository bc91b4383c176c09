-- Every function that takes a model (or a lead, a stage) names the one it does not know in a clear error:
-- a typo never gives an empty or all-zero answer. (A reset of a lead not scored yet is kept, with a
-- NOTICE: its events count from it when they come; see reset.sql.)
CREATE EXTENSION leadscore;
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int8 PRIMARY KEY, size int);
CREATE TABLE crm.event (lead int8, kind text, at timestamptz);
INSERT INTO leadscore.model (name, half_life) VALUES ('saas', '10 days');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.event', 'lead', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('saas', 'big', 'crm.lead', 'size > 100', 5);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'MQL', 5);
INSERT INTO crm.lead VALUES (1, 500);

-- an unknown model ('sass' for 'saas')
SELECT leadscore.track_leads('sass', 'crm.lead', 'id');
SELECT leadscore.track_events('sass', 'crm.event', 'lead', 'at');
SELECT leadscore.untrack('sass', 'crm.lead');
SELECT leadscore.recompute('sass');
SELECT * FROM leadscore.scores_at('sass');
SELECT * FROM leadscore.explain('sass', '1');
SELECT * FROM leadscore.top_leads('sass');
SELECT * FROM leadscore.stage_leads('sass', 'MQL');
SELECT leadscore.snapshot('sass');
SELECT leadscore.reset('sass', '1');
SELECT * FROM leadscore.activity('sass');
SELECT leadscore.refresh_rfm('sass');
SELECT * FROM leadscore.conversion_by_stage('sass', 'SELECT 1::int8 AS lead, true AS converted');
SELECT * FROM leadscore.calibrate_rules('sass', 'SELECT 1::int8 AS lead, true AS converted');
SELECT leadscore.predict('sass', l) FROM crm.lead l;
-- an unknown lead, stage, or key of the wrong type
SELECT * FROM leadscore.explain('saas', '2');
SELECT * FROM leadscore.explain('saas', 'one');
SELECT * FROM leadscore.stage_leads('saas', 'mql');
SELECT leadscore.reset('saas', 'one');
-- the known ones answer
SELECT lead, score, stage FROM leadscore.scores_at('saas');
SELECT rule, hits FROM leadscore.explain('saas', '1');
SELECT lead FROM leadscore.stage_leads('saas', 'MQL');

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
