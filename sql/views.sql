-- The typed score views join to the CRM's lead table on its key through the state's primary key.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text);
INSERT INTO crm.lead SELECT g, 'n' || g FROM generate_series(1, 5000) g;
INSERT INTO leadscore.model (name) VALUES ('m');
SELECT leadscore.track_leads('m', 'crm.lead', 'id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'even', 'crm.lead', 'id % 2 = 0', 1);
ANALYZE crm.lead, leadscore.state_int8, leadscore.model;
EXPLAIN (COSTS OFF)
SELECT l.name, s.score FROM crm.lead l JOIN leadscore.scores_int8 s ON s.lead = l.id AND s.model = 'm' WHERE l.id = 42;
EXPLAIN (COSTS OFF)
SELECT l.name, s.score FROM crm.lead l JOIN leadscore.scores_int8 s ON s.lead = l.id AND s.model = 'm'
 WHERE l.name = 'n42';
SELECT l.name, s.score, s.stage FROM crm.lead l JOIN leadscore.scores_int8 s ON s.lead = l.id AND s.model = 'm'
 WHERE l.id IN (41, 42) ORDER BY l.id;
SELECT count(*), sum(score) FROM leadscore.scores WHERE model = 'm';
DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
