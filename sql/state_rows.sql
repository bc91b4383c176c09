-- How lead states are stored: a row changed many times in one transaction (its versions fill the page,
-- so updates stop being HOT and need index entries), statements over more leads than one chunk, some
-- leads with a state row and some without, several models of one table.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, plan text);
CREATE TABLE crm.hit (lead bigint, kind text);
INSERT INTO leadscore.model (name) VALUES ('hits'), ('kinds');
SELECT leadscore.track_leads('hits', 'crm.lead', 'id');
SELECT leadscore.track_events('hits', 'crm.hit', 'lead');
SELECT leadscore.track_leads('kinds', 'crm.lead', 'id');
SELECT leadscore.track_events('kinds', 'crm.hit', 'lead');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('hits', 'paid', 'crm.lead', $$plan = 'paid'$$, 100),
	('hits', 'hit', 'crm.hit', 'true', 1),
	('kinds', 'demo', 'crm.hit', $$kind = 'demo'$$, 5);
INSERT INTO crm.lead SELECT i, CASE WHEN i % 2 = 0 THEN 'paid' END FROM generate_series(1, 12000) i;

-- 400 single-row statements on one lead in one transaction.
BEGIN;
DO $$
BEGIN
	FOR i IN 1..400 LOOP
		INSERT INTO crm.hit VALUES (2, CASE WHEN i % 4 = 0 THEN 'demo' END);
	END LOOP;
END
$$;
SELECT model, score FROM leadscore.scores_int8 WHERE lead = 2 ORDER BY model;
COMMIT;
-- Versions of the row went to other pages: the primary key still finds exactly the latest one.
SELECT count(DISTINCT (ctid::text::point)[0]) > 1 AS several_pages FROM leadscore.state_int8;
SET enable_seqscan = off;
SELECT model_id, n_events FROM leadscore.state_int8 WHERE lead = 2 ORDER BY model_id;
RESET enable_seqscan;

-- One statement over 14,000 leads: 12,000 with a state row (for 'hits'), 2,000 unknown to the lead table;
-- 'kinds' has no row yet for most of them.
INSERT INTO crm.hit SELECT 1 + i % 14000, CASE WHEN i % 3 = 0 THEN 'demo' END FROM generate_series(0, 27999) i;
-- The same rows again (all state rows exist now), then half of them deleted.
INSERT INTO crm.hit SELECT 1 + i % 14000, CASE WHEN i % 3 = 0 THEN 'demo' END FROM generate_series(0, 27999) i;
DELETE FROM crm.hit WHERE lead % 2 = 1 AND kind IS NULL;

CREATE TEMP TABLE live AS SELECT model, lead, score, engagement FROM leadscore.scores_int8;
CREATE TEMP TABLE live_state AS SELECT model_id, lead, n_events, eng_n FROM leadscore.state_int8;
SELECT model, count(*), sum(score), sum(engagement) FROM live GROUP BY model ORDER BY model;
SELECT leadscore.recompute('hits') AS hits, leadscore.recompute('kinds') AS kinds;
-- The live states equal a recompute from scratch, lead by lead.
SELECT count(*) AS differ
FROM live l FULL JOIN leadscore.scores_int8 r USING (model, lead)
WHERE l.score IS DISTINCT FROM r.score OR l.engagement IS DISTINCT FROM r.engagement;
SELECT count(*) AS differ
FROM live_state l FULL JOIN leadscore.state_int8 r USING (model_id, lead)
WHERE l.n_events IS DISTINCT FROM r.n_events OR l.eng_n IS DISTINCT FROM r.eng_n;
-- The same through SQL statements on the state tables (leadscore.direct_state_access = off, as when
-- those tables are not local): single rows, a bulk statement, deletes; still equal to a recompute.
SET leadscore.direct_state_access = off;
INSERT INTO crm.hit VALUES (5, 'demo');
INSERT INTO crm.hit VALUES (20001, 'demo');
INSERT INTO crm.hit SELECT 1 + i % 3000, NULL FROM generate_series(0, 5999) i;
DELETE FROM crm.hit WHERE lead % 7 = 0;
UPDATE crm.lead SET plan = 'paid' WHERE id % 5 = 0;
RESET leadscore.direct_state_access;
TRUNCATE live, live_state;
INSERT INTO live SELECT model, lead, score, engagement FROM leadscore.scores_int8;
INSERT INTO live_state SELECT model_id, lead, n_events, eng_n FROM leadscore.state_int8;
SELECT leadscore.recompute('hits') AS hits, leadscore.recompute('kinds') AS kinds;
SELECT count(*) AS differ
FROM live l FULL JOIN leadscore.scores_int8 r USING (model, lead)
WHERE l.score IS DISTINCT FROM r.score OR l.engagement IS DISTINCT FROM r.engagement;
SELECT count(*) AS differ
FROM live_state l FULL JOIN leadscore.state_int8 r USING (model_id, lead)
WHERE l.n_events IS DISTINCT FROM r.n_events OR l.eng_n IS DISTINCT FROM r.eng_n;

-- Leave the database as found.
DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
