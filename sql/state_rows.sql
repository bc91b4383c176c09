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
-- A backend remembers where it last found each lead's row and goes there first: rows rewritten by a
-- recompute, moved by VACUUM FULL, their places reused after VACUUM, pages truncated, a row of a rolled
-- back transaction: each time the next single-row statements must still find their own lead's row.
-- 'hits' is exact by counting: 100 for a paid lead, 1 per hit.
CREATE FUNCTION pg_temp.hits_differ() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*)
	FROM (SELECT lead, sum(points) AS score
	      FROM (SELECT id AS lead, CASE WHEN plan = 'paid' THEN 100 ELSE 0 END AS points FROM crm.lead
	            UNION ALL SELECT lead, 1 FROM crm.hit) x
	      GROUP BY lead) e
	FULL JOIN (SELECT lead, score FROM leadscore.scores_int8 WHERE model = 'hits') s USING (lead)
	WHERE e.score IS DISTINCT FROM s.score
$$;
CREATE PROCEDURE pg_temp.hit_each(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		INSERT INTO crm.hit VALUES (1 + (i * 7919) % 13000, 'demo');
	END LOOP;
END
$$;
CALL pg_temp.hit_each(300);
SELECT leadscore.recompute('hits') AS hits;
CALL pg_temp.hit_each(300);
SELECT pg_temp.hits_differ() AS after_recompute;
VACUUM leadscore.state_int8;
SELECT leadscore.recompute('hits') AS hits;
CALL pg_temp.hit_each(300);
SELECT pg_temp.hits_differ() AS after_vacuum;
VACUUM FULL leadscore.state_int8;
CALL pg_temp.hit_each(300);
SELECT pg_temp.hits_differ() AS after_vacuum_full;
BEGIN;
INSERT INTO crm.hit VALUES (30001, 'demo');
INSERT INTO crm.hit VALUES (30001, 'demo');
ROLLBACK;
INSERT INTO crm.hit VALUES (30001, 'demo');
INSERT INTO crm.hit VALUES (30001, 'demo');
SELECT pg_temp.hits_differ() AS after_rollback;
-- Most rows gone, the table's tail truncated by VACUUM: remembered places past its end are skipped.
DELETE FROM crm.hit WHERE lead > 100;
DELETE FROM crm.lead WHERE id > 100;
SELECT leadscore.recompute('hits') AS hits, leadscore.recompute('kinds') AS kinds;
VACUUM leadscore.state_int8;
CALL pg_temp.hit_each(300);
SELECT pg_temp.hits_differ() AS after_truncation;
SELECT count(*) AS leads, sum(score) AS total FROM leadscore.scores_int8 WHERE model = 'hits';
-- The same with uuid keys (remembered by their 16 bytes) and int4 keys.
CREATE TABLE crm.u_lead (id uuid PRIMARY KEY);
CREATE TABLE crm.u_hit (lead uuid);
CREATE TABLE crm.i_lead (id int PRIMARY KEY);
CREATE TABLE crm.i_hit (lead int);
INSERT INTO leadscore.model (name) VALUES ('u_hits'), ('i_hits');
SELECT leadscore.track_leads('u_hits', 'crm.u_lead', 'id'), leadscore.track_events('u_hits', 'crm.u_hit', 'lead');
SELECT leadscore.track_leads('i_hits', 'crm.i_lead', 'id'), leadscore.track_events('i_hits', 'crm.i_hit', 'lead');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('u_hits', 'hit', 'crm.u_hit', 'true', 1), ('i_hits', 'hit', 'crm.i_hit', 'true', 1);
INSERT INTO crm.u_lead SELECT md5(i::text)::uuid FROM generate_series(1, 500) i;
INSERT INTO crm.i_lead SELECT i FROM generate_series(1, 500) i;
CREATE PROCEDURE pg_temp.hit_keys(n int) LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1..n LOOP
		INSERT INTO crm.u_hit VALUES (md5((1 + (i * 7919) % 600)::text)::uuid);
		INSERT INTO crm.i_hit VALUES (1 + (i * 7919) % 600);
	END LOOP;
END
$$;
CALL pg_temp.hit_keys(400);
DELETE FROM crm.u_hit WHERE get_byte(uuid_send(lead), 0) < 128;
DELETE FROM crm.i_hit WHERE lead % 2 = 0;
SELECT leadscore.recompute('u_hits') AS u_hits, leadscore.recompute('i_hits') AS i_hits;
VACUUM FULL leadscore.state_uuid;
VACUUM FULL leadscore.state_int4;
CALL pg_temp.hit_keys(400);
SELECT (SELECT count(*) FROM (SELECT lead, count(*) AS n FROM crm.u_hit GROUP BY lead) h
        FULL JOIN (SELECT lead, score FROM leadscore.scores_uuid WHERE model = 'u_hits' AND score > 0) s USING (lead)
        WHERE h.n IS DISTINCT FROM s.score) AS uuid_differ,
       (SELECT count(*) FROM (SELECT lead, count(*) AS n FROM crm.i_hit GROUP BY lead) h
        FULL JOIN (SELECT lead, score FROM leadscore.scores_int4 WHERE model = 'i_hits' AND score > 0) s USING (lead)
        WHERE h.n IS DISTINCT FROM s.score) AS int4_differ,
       (SELECT sum(score) FROM leadscore.scores_uuid WHERE model = 'u_hits') AS uuid_total,
       (SELECT sum(score) FROM leadscore.scores_int4 WHERE model = 'i_hits') AS int4_total;

-- The same through SQL statements on the state tables (leadscore.direct_state_access = off, as when
-- those tables are not local): single rows, a bulk statement, deletes; still equal to a recompute.
SET leadscore.direct_state_acess = off;   -- a typo: refused (1.4), not accepted and ignored
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
