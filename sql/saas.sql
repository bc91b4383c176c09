-- The SaaS behaviour model of the README's Getting started: points per activity, a capped rule, negative points,
-- 30-day half-life, stages; live through INSERT, UPDATE, DELETE, COPY, INSERT ... SELECT.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, email text);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, url text, occurred_at timestamptz);
CREATE INDEX ON crm.activity (lead_id);

INSERT INTO leadscore.model (name, half_life) VALUES ('saas', '30 days');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
INSERT INTO leadscore.rule (model, name, source, condition, points, cap) VALUES
	('saas', 'pricing page', 'crm.activity', $$type = 'page_view' AND url LIKE '%/pricing%'$$, 10, NULL),
	('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15, NULL),
	('saas', 'white paper', 'crm.activity', $$type = 'download' AND url LIKE '%whitepaper%'$$, 5, NULL),
	('saas', 'email open', 'crm.activity', $$type = 'email_open'$$, 1, 10),
	('saas', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 25, NULL),
	('saas', 'unsubscribe', 'crm.activity', $$type = 'unsubscribe'$$, -20, NULL);
INSERT INTO leadscore.stage VALUES ('saas', 'cold', '-Infinity'), ('saas', 'warm', 20), ('saas', 'MQL', 50);

INSERT INTO crm.lead VALUES (1, 'Ada', 'ada@acme.com'), (2, 'Bob', 'bob@example.org'), (3, 'Cy', 'cy@example.org');
-- Ada: pricing page 30 days before the reading time, a webinar and a demo request on the day.
INSERT INTO crm.activity (lead_id, type, url, occurred_at) VALUES
	(1, 'page_view', 'https://x.io/pricing', '2026-01-01 00:00+00'),
	(1, 'webinar', NULL, '2026-01-31 00:00+00'),
	(1, 'demo_request', NULL, '2026-01-31 00:00+00');
-- Bob: 15 email opens (capped at 10) and a white paper, all on the reading day.
INSERT INTO crm.activity (lead_id, type, url, occurred_at)
	SELECT 2, 'email_open', NULL, '2026-01-31 00:00+00' FROM generate_series(1, 15);
COPY crm.activity (lead_id, type, url, occurred_at) FROM stdin;
2	download	https://x.io/whitepaper.pdf	2026-01-31 00:00+00
3	unsubscribe	\N	2026-01-31 00:00+00
\.

-- Ada: 5 (10 halved after 30 days) + 15 + 25 = 45; Bob: 10 + 5; Cy: -20.
SELECT lead, round(score::numeric, 6) AS score, stage, last_activity
  FROM leadscore.scores_at('saas', '2026-01-31 00:00+00') ORDER BY lead;
SELECT rule, kind, hits, points, raw, round(decayed::numeric, 6) AS decayed, round(capped::numeric, 6) AS capped
  FROM leadscore.explain('saas', '1', '2026-01-31 00:00+00') ORDER BY rule;
-- Sixty days later everything is a quarter.
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('saas', '2026-04-01 00:00+00') ORDER BY lead;
-- Before the events of the day, only what happened before counts.
SELECT lead, round(score::numeric, 6) AS score, last_activity
  FROM leadscore.scores_at('saas', '2026-01-15 00:00+00') ORDER BY lead;

-- Updates move points: the webinar becomes a second demo request; Cy's unsubscribe moves to Ada.
UPDATE crm.activity SET type = 'demo_request' WHERE lead_id = 1 AND type = 'webinar';
UPDATE crm.activity SET lead_id = 1 WHERE lead_id = 3;
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('saas', '2026-01-31 00:00+00') ORDER BY lead;
-- A lead whose events all go keeps its row while the lead exists.
DELETE FROM crm.activity WHERE lead_id = 2;
SELECT lead, round(score::numeric, 6) AS score, last_activity
  FROM leadscore.scores_at('saas', '2026-01-31 00:00+00') ORDER BY lead;

-- The live state equals a recompute from scratch.
CREATE TEMP TABLE live AS SELECT * FROM leadscore.scores_at('saas', '2026-02-10 00:00+00');
SELECT leadscore.recompute('saas');
SELECT count(*) AS mismatches FROM live l FULL JOIN leadscore.scores_at('saas', '2026-02-10 00:00+00') r USING (lead)
 WHERE l.score IS DISTINCT FROM r.score AND abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score));

-- Changing a rule takes effect for every lead at once.
UPDATE leadscore.rule SET points = 50 WHERE model = 'saas' AND name = 'demo request';
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('saas', '2026-01-31 00:00+00') ORDER BY lead;
UPDATE leadscore.rule SET enabled = false WHERE model = 'saas' AND name = 'demo request';
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('saas', '2026-01-31 00:00+00') ORDER BY lead;

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
