-- Every function called with NULL arguments gives NULL, nothing or a clear error, never a crash.
CREATE EXTENSION leadscore;
\set SHOW_CONTEXT never
CREATE TABLE lead (id int PRIMARY KEY);
INSERT INTO leadscore.model (name) VALUES ('m');
SELECT leadscore.track_leads(NULL, 'lead', 'id');
SELECT leadscore.track_leads('m', NULL, 'id');
SELECT leadscore.track_leads('m', 'lead', NULL);
SELECT leadscore.track_events(NULL, NULL, NULL, NULL);
SELECT leadscore.untrack(NULL, NULL);
SELECT leadscore.untrack('m', 'lead', NULL);
SELECT leadscore.recompute(NULL);
SELECT * FROM leadscore.scores_at(NULL);
SELECT * FROM leadscore.scores_at('m', NULL);
SELECT * FROM leadscore.explain(NULL, '1');
SELECT * FROM leadscore.explain('m', NULL);
SELECT * FROM leadscore.explain('m', '1', NULL);
SELECT leadscore._eval(NULL::leadscore.state_int4, now());
SELECT leadscore.track_leads('m', 'lead', 'id');
SELECT * FROM leadscore.explain('m', 'not a number');
SELECT * FROM leadscore.explain('nope', '1');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', NULL, 1);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', 'id > 1', NULL);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', '', 1);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', 'NULL', 1);
INSERT INTO lead VALUES (1), (2);
SELECT lead, score FROM leadscore.scores_at('m', '2026-01-01') ORDER BY lead;
DROP TABLE lead;
DROP EXTENSION leadscore;
