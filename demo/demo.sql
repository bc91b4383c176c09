-- leadscore demo: a small CRM whose leads are scored live, inside PostgreSQL.
-- Run it with `bash scripts/demo.sh` (on a throwaway server), or with psql as a superuser in a fresh
-- database of your own: createdb leadscore_demo && psql -X -d leadscore_demo -f demo/demo.sql
--
-- The CRM below is plain SQL: leadscore adds no column to it. Two scoring models read its tables:
--   saas  what a lead does (page views, webinars, demo requests...), fading with a 30-day half-life;
--   b2b   who a lead is (industry, size, country, email, name), plus the saas behaviour as its
--         engagement axis, so that it grades leads A1 (great fit, very engaged) to C3.
\set QUIET on
\pset footer off
\pset null '-'

\echo
\echo '== 1. A small CRM: 12 leads, a few hundred activities over the last 90 days'
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	email text,
	company text,
	industry text,
	employees int,
	country text
);
CREATE TABLE crm.activity (
	id bigserial PRIMARY KEY,
	lead_id bigint REFERENCES crm.lead,
	type text NOT NULL,              -- page_view, email_open, download, webinar, demo_request, unsubscribe
	url text,
	occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON crm.activity (lead_id);

INSERT INTO crm.lead VALUES
	(1, 'Claire Dubois', 'claire.dubois@nimbus-analytics.fr', 'Nimbus Analytics', 'Technology', 240, 'FR'),
	(2, 'Jonas Weber', 'j.weber@brandt-logistik.de', 'Brandt Logistik', 'Logistics', 850, 'DE'),
	(3, 'Sofia Martínez', 'sofia.martinez@tiendaverde.es', 'Tienda Verde', 'Retail', 120, 'ES'),
	(4, 'Liam O''Connor', 'liam.oconnor@gmail.com', 'O''Connor Consulting', 'Consulting', 3, 'IE'),
	(5, 'Emma Janssens', 'emma.janssens@cartawave.be', 'Cartawave', 'Technology', 430, 'BE'),
	(6, 'Noah Fischer', 'noah.fischer@helvetia-retail.ch', 'Helvetia Retail Group', 'Retail', 2400, 'CH'),
	(7, 'asdf qwerty', 'asdf@yahoo.com', NULL, NULL, NULL, 'US'),
	(8, 'Mei Chen', 'mei.chen@orbitly.io', 'Orbitly', 'Technology', 65, 'US'),
	(9, 'Lucas Moreau', 'lucas.moreau@maisonlumen.fr', 'Maison Lumen', 'Retail', 560, 'FR'),
	(10, 'Hannah Schmidt', 'hannah.schmidt@outlook.com', 'Schmidt & Partner', 'Manufacturing', 150, 'DE'),
	(11, 'Marco Rossi', 'marco.rossi@veloce-software.it', 'Veloce Software', 'Technology', 310, 'IT'),
	(12, 'Aisha Khan', 'aisha.khan@brightpath.co.uk', 'BrightPath Health', 'Healthcare', 980, 'GB');

-- Activities: n per lead (how interested each lead is), the type, page and time of each drawn from an
-- md5 hash of (lead, n): the same data at every run, dated relative to now.
WITH interest (lead_id, n) AS (
	VALUES (1, 40), (2, 25), (3, 30), (4, 15), (5, 35), (6, 10), (7, 5), (8, 30), (9, 20), (10, 12), (11, 45), (12, 18)
), draw AS (
	SELECT i.lead_id,
	       ('x' || substr(h, 1, 8))::bit(32)::bigint / 4294967296.0 AS r1,   -- three numbers in [0, 1)
	       ('x' || substr(h, 9, 8))::bit(32)::bigint / 4294967296.0 AS r2,
	       ('x' || substr(h, 17, 8))::bit(32)::bigint / 4294967296.0 AS r3
	  FROM interest i, generate_series(1, i.n) g, md5(i.lead_id || '/' || g) h
)
INSERT INTO crm.activity (lead_id, type, url, occurred_at)
SELECT lead_id,
       CASE WHEN r1 < 0.45 THEN 'email_open' WHEN r1 < 0.80 THEN 'page_view'
            WHEN r1 < 0.93 THEN 'download' ELSE 'webinar' END,
       CASE WHEN r1 < 0.45 THEN NULL
            WHEN r1 < 0.80 THEN 'https://acme-crm.example/'
                                || (ARRAY['pricing', 'features', 'blog/lead-scoring-101', 'customers'])[1 + floor(r2 * 4)::int]
            WHEN r1 < 0.93 THEN 'https://acme-crm.example/resources/'
                                || CASE WHEN r2 < 0.6 THEN 'whitepaper-lead-scoring.pdf' ELSE 'datasheet.pdf' END
            ELSE 'https://acme-crm.example/webinars/scoring-live' END,
       now() - r3 * interval '90 days'
  FROM draw;

SELECT type, count(*) AS activities, min(occurred_at)::date AS first, max(occurred_at)::date AS last
  FROM crm.activity GROUP BY type ORDER BY count(*) DESC;

\echo
\echo '== 2. Two scoring models, written as rows: rules are SQL conditions on the CRM''s own tables'
-- The SaaS behaviour model: points per activity, engagement halves every 30 days; hot_index keeps an
-- index of its hottest leads (leadscore.top_leads, step 7).
INSERT INTO leadscore.model (name, half_life, description, hot_index)
	VALUES ('saas', '30 days', 'what a lead does: web, email, webinar, demo', true);
-- (\g /dev/null: these functions return nothing worth printing)
SELECT leadscore.track_leads('saas', 'crm.lead', 'id') \g /dev/null
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at') \g /dev/null
INSERT INTO leadscore.rule (model, name, source, condition, points, cap) VALUES
	('saas', 'pricing page', 'crm.activity', $$type = 'page_view' AND url LIKE '%/pricing%'$$, 10, NULL),
	('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15, NULL),
	('saas', 'white paper', 'crm.activity', $$type = 'download' AND url LIKE '%whitepaper%'$$, 5, NULL),
	('saas', 'email open', 'crm.activity', $$type = 'email_open'$$, 1, 10),       -- at most 10 in total
	('saas', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 25, NULL),
	('saas', 'unsubscribe', 'crm.activity', $$type = 'unsubscribe'$$, -20, NULL);
INSERT INTO leadscore.stage (model, name, min_score) VALUES
	('saas', 'cold', '-Infinity'), ('saas', 'warm', 20), ('saas', 'MQL', 50);

-- The B2B fit model: points for who the lead is, read from the lead row.
INSERT INTO leadscore.model (name, half_life, description)
	VALUES ('b2b', '30 days', 'who a lead is (fit), graded with the saas behaviour (engagement)');
SELECT leadscore.track_leads('b2b', 'crm.lead', 'id') \g /dev/null
SELECT leadscore.track_events('b2b', 'crm.activity', 'lead_id', 'occurred_at') \g /dev/null
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('b2b', 'industry technology', 'crm.lead', $$industry = 'Technology'$$, 10),
	('b2b', 'industry retail', 'crm.lead', $$industry = 'Retail'$$, 8),
	('b2b', 'industry other', 'crm.lead', $$industry IS NULL OR industry NOT IN ('Technology', 'Retail')$$, 5),
	('b2b', 'size 100-500', 'crm.lead', $$employees BETWEEN 100 AND 500$$, 15),
	('b2b', 'size 501-1000', 'crm.lead', $$employees BETWEEN 501 AND 1000$$, 10),
	('b2b', 'size other', 'crm.lead', $$employees IS NULL OR employees < 100 OR employees > 1000$$, 5),
	('b2b', 'target country', 'crm.lead', $$country IN ('FR', 'DE')$$, 10),
	('b2b', 'secondary country', 'crm.lead', $$country IN ('BE', 'CH', 'ES')$$, 5),
	('b2b', 'personal email', 'crm.lead',
	 $$split_part(lower(email), '@', 2) IN ('gmail.com', 'yahoo.com', 'hotmail.com', 'outlook.com')$$, -10),
	('b2b', 'fake name', 'crm.lead', $$lower(name) ~ '^(azerty|qwerty|asdf|test)'$$, -30);
-- Its engagement axis: the saas behaviour rules, copied with plain SQL (rules are rows).
INSERT INTO leadscore.rule (model, name, source, condition, points, cap)
	SELECT 'b2b', name, source, condition, points, cap FROM leadscore.rule WHERE model = 'saas';
-- Grades: fit band A/B/C and engagement band 1/2/3 side by side (A1 = great fit, very engaged).
INSERT INTO leadscore.grade_band (model, axis, name, min_score) VALUES
	('b2b', 'fit', 'A', 25), ('b2b', 'fit', 'B', 10), ('b2b', 'fit', 'C', '-Infinity'),
	('b2b', 'engagement', '1', 40), ('b2b', 'engagement', '2', 20), ('b2b', 'engagement', '3', '-Infinity');

SELECT model, count(*) AS rules, count(*) FILTER (WHERE source = 'crm.lead'::regclass) AS fit_rules,
       count(*) FILTER (WHERE source = 'crm.activity'::regclass) AS behaviour_rules
  FROM leadscore.rule GROUP BY model ORDER BY model DESC;

-- From now on psql prints every stage change the moment its transaction commits.
LISTEN leadscore_stage;

\echo
\echo '== 3. Top leads, scored already: saas score and stage, b2b fit and grade'
-- leadscore.scores: one row per model and lead, current (decay is computed at read time).
SELECT l.name, l.company, round(s.score::numeric, 1) AS score, s.stage,
       round(b.fit::numeric) AS fit, b.grade,
       to_char(now() - s.last_activity, 'FMDD"d "FMHH24"h ago"') AS last_activity
  FROM crm.lead l
  JOIN leadscore.scores s ON s.model = 'saas' AND s.lead = l.id::text
  JOIN leadscore.scores b ON b.model = 'b2b' AND b.lead = l.id::text
 ORDER BY s.score DESC
 LIMIT 8;

\echo 'At the bottom, "asdf qwerty" (grade C3). explain() gives each rule''s share of its b2b score:'
SELECT rule, kind, points, round(weighted::numeric, 1) AS weighted
  FROM leadscore.explain('b2b', '7') WHERE hits > 0 ORDER BY kind DESC, weighted;

\echo
\echo '== 4. Emma Janssens (warm) requests a demo: a plain INSERT into the CRM, scored by its trigger'
INSERT INTO crm.activity (lead_id, type, url) VALUES (5, 'demo_request', 'https://acme-crm.example/demo');
\echo '(the "Asynchronous notification" line above is the NOTIFY leadscore sent when the INSERT committed)'
SELECT l.name, round(s.score::numeric, 1) AS score, s.stage
  FROM crm.lead l JOIN leadscore.scores s ON s.model = 'saas' AND s.lead = l.id::text WHERE l.id = 5;
\echo 'The stage change is recorded:'
SELECT model, lead, from_stage, to_stage, round(score::numeric, 1) AS score, changed_at::time(0) AS at
  FROM leadscore.stage_changes ORDER BY id DESC LIMIT 1;
\echo 'Why 61 points? explain() per rule (hits, points, after decay, after cap):'
SELECT * FROM (
	SELECT rule, hits, points, round(decayed::numeric, 1) AS decayed, round(capped::numeric, 1) AS capped,
	       round(weighted::numeric, 1) AS weighted
	  FROM leadscore.explain('saas', '5') WHERE hits > 0 OR kind = 'limit'
	UNION ALL
	SELECT '= score', NULL, NULL, NULL, NULL, round(sum(weighted)::numeric, 1) FROM leadscore.explain('saas', '5')
) e ORDER BY rule = '= score', weighted DESC;

\echo
\echo '== 5. Jonas Weber unsubscribes from the newsletter: negative points'
INSERT INTO crm.activity (lead_id, type) VALUES (2, 'unsubscribe');
SELECT l.name, round(s.score::numeric, 1) AS score, s.stage
  FROM crm.lead l JOIN leadscore.scores s ON s.model = 'saas' AND s.lead = l.id::text WHERE l.id = 2;

\echo
\echo '== 6. Marketing decides a pricing page view is worth 15 points, not 10: a plain UPDATE'
CREATE TEMP TABLE before AS SELECT lead, score FROM leadscore.scores WHERE model = 'saas';
UPDATE leadscore.rule SET points = 15 WHERE model = 'saas' AND name = 'pricing page';
-- Every lead is rescored in the same statement; a lead crossing 50 becomes an MQL (NOTIFY above).
SELECT l.name, round(b.score::numeric, 1) AS before, round(s.score::numeric, 1) AS after, s.stage
  FROM crm.lead l
  JOIN before b ON b.lead = l.id::text
  JOIN leadscore.scores s ON s.model = 'saas' AND s.lead = l.id::text
 ORDER BY s.score DESC
 LIMIT 5;

\echo
\echo '== 7. A month from now, if nothing happens: engagement fades, half-life 30 days (leadscore.scores_at)'
SELECT l.name, round(s.score::numeric, 1) AS today, s.stage,
       round(m.score::numeric, 1) AS in_30_days, m.stage AS stage_in_30_days
  FROM crm.lead l
  JOIN leadscore.scores s ON s.model = 'saas' AND s.lead = l.id::text
  JOIN leadscore.scores_at('saas', now() + interval '30 days') m ON m.lead = l.id::text
 ORDER BY s.score DESC
 LIMIT 5;
\echo 'The 3 hottest leads in 30 days, read from an index (leadscore.top_leads, exact at any time):'
SELECT l.name, round(h.score::numeric, 1) AS score, h.stage
  FROM leadscore.top_leads('saas', 3, now() + interval '30 days') h JOIN crm.lead l ON l.id = h.lead::int;

\echo
\echo '== 8. Check: the live scores equal a recompute from scratch (then roll back)'
BEGIN;
CREATE TEMP TABLE live AS SELECT model, lead, score, stage, grade FROM leadscore.scores;
SELECT name AS model, leadscore.recompute(name) AS leads_recomputed FROM leadscore.model ORDER BY name DESC;
SELECT count(*) AS leads_compared,
       count(*) FILTER (WHERE l.lead IS NULL OR r.lead IS NULL
                           OR abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score))
                           OR l.stage IS DISTINCT FROM r.stage OR l.grade IS DISTINCT FROM r.grade) AS mismatches
  FROM live l FULL JOIN leadscore.scores r USING (model, lead);
ROLLBACK;

\echo
\echo '== 9. The scheduled run (pg_cron, every minute) records the stage changes time alone causes, at the instant'
\echo '      they happen: here as if it ran a month from now (then roll back)'
BEGIN;
SELECT leadscore.advance_stages(now() + interval '30 days') AS changes_recorded;
SELECT l.name, c.from_stage, c.to_stage, round(c.score::numeric, 1) AS score,
       to_char(c.changed_at - now(), 'DD "days" HH24:MI:SS') AS from_now
  FROM leadscore.stage_changes c JOIN crm.lead l ON l.id::text = c.lead
 WHERE c.model = 'saas' AND c.changed_at > now()
 ORDER BY c.changed_at
 LIMIT 6;
ROLLBACK;
\echo
\echo 'Done. To play with it, run demo/demo.sql in a database of your own (see its first lines), then e.g.'
\echo '  INSERT INTO crm.activity (lead_id, type) VALUES (3, ''webinar'');'
\echo '  SELECT * FROM leadscore.scores WHERE lead = ''3'';'
