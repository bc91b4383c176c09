-- Hottest leads from an index: top_leads and stage_leads give exactly what sorting every lead's score
-- gives, at any as_of (also before some events, and long after), with caps, categories of both signs,
-- grace periods, inactivity steps, floor and ceiling; bad arguments refused. Models 'decay' and 'grace'
-- keep the keys (hot_index); 'flat' does not (its leads are all read), until it is switched on.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY, industry text, employees int);
CREATE TABLE crm.activity (lead int, kind text, at timestamptz NOT NULL);
INSERT INTO leadscore.model (name, half_life, hot_index) VALUES ('decay', '20 days', true);
INSERT INTO leadscore.model (name, half_life, grace, floor, ceiling, hot_index) VALUES ('grace', '10 days', '7 days', -10, 60, true);
INSERT INTO leadscore.model (name) VALUES ('flat');
SELECT leadscore.track_leads(m, 'crm.lead', 'id'), leadscore.track_events(m, 'crm.activity', 'lead', 'at')
  FROM unnest(ARRAY['decay', 'grace', 'flat']) m;
INSERT INTO leadscore.category (model, name, weight, cap) VALUES
	('decay', 'interest', 1.5, 40), ('decay', 'risk', -0.5, 30), ('grace', 'interest', 1, 25);
INSERT INTO leadscore.rule (model, name, source, condition, points, cap, category)
SELECT m, r.name, r.source::regclass, r.condition, r.points, r.cap, CASE WHEN m <> 'flat' THEN r.category END
  FROM unnest(ARRAY['decay', 'grace', 'flat']) m,
       (VALUES ('technology', 'crm.lead', $$industry = 'Technology'$$, 10, NULL, NULL),
               ('large', 'crm.lead', 'employees > 500', 15, NULL, 'interest'),
               ('pricing', 'crm.activity', $$kind = 'pricing'$$, 10, NULL, 'interest'),
               ('email', 'crm.activity', $$kind = 'email'$$, 1, 5, NULL),
               ('complaint', 'crm.activity', $$kind = 'complaint'$$, -8, NULL, 'risk'),
               ('unsubscribe', 'crm.activity', $$kind = 'unsubscribe'$$, -20, NULL, NULL))
       AS r(name, source, condition, points, cap, category)
 WHERE m <> 'grace' OR r.category IS DISTINCT FROM 'risk';
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES
	('decay', 'quiet', '30 days', -5), ('flat', 'quiet', '60 days', -10), ('flat', 'back soon', '20 days', 3);
INSERT INTO leadscore.stage (model, name, min_score) VALUES
	('decay', 'cold', '-Infinity'), ('decay', 'warm', 15), ('decay', 'MQL', 35),
	('grace', 'cold', '-Infinity'), ('grace', 'MQL', 30);

SELECT setseed(0.42);
INSERT INTO crm.lead
SELECT g, (ARRAY['Technology', 'Retail', 'Health'])[1 + (random() * 2)::int], (random() * 1000)::int
  FROM generate_series(1, 600) g;
INSERT INTO crm.activity
SELECT 1 + (random() * 599)::int, (ARRAY['pricing', 'email', 'email', 'complaint', 'unsubscribe', 'pricing'])[1 + (random() * 5)::int],
       timestamptz '2026-01-01' + random() * interval '120 days'
  FROM generate_series(1, 3000);

-- The same scores as the full sort, for several n and instants (before, during and long after the events).
CREATE FUNCTION pg_temp.agree(model text, n int, as_of timestamptz) RETURNS boolean LANGUAGE sql AS $$
	SELECT (SELECT array_agg(round(score::numeric, 9) ORDER BY score DESC) FROM leadscore.top_leads(model, n, as_of))
	     = (SELECT array_agg(s ORDER BY s DESC) FROM (SELECT round(score::numeric, 9) AS s FROM leadscore.scores_at(model, as_of)
	         ORDER BY score DESC LIMIT n) x)
$$;
SELECT m, count(*) AS cases, count(*) FILTER (WHERE pg_temp.agree(m, n, t)) AS agree
  FROM unnest(ARRAY['decay', 'grace', 'flat']) m, unnest(ARRAY[1, 10, 100, 1000]) n,
       unnest(ARRAY[timestamptz '2025-12-01', '2026-02-15', '2026-05-01', '2026-05-02 12:34', '2027-01-01', '2040-01-01']) t
 GROUP BY m ORDER BY m;

-- Leads, not only scores: the top 5 of the decay model now and at the start of March.
SELECT lead, round(score::numeric, 4) AS score, stage FROM leadscore.top_leads('decay', 5, '2026-05-01');
SELECT lead, round(score::numeric, 4) AS score, stage FROM leadscore.scores_at('decay', '2026-05-01') ORDER BY score DESC LIMIT 5;

-- The leads of a stage: the same as filtering every lead's stage.
SELECT m, s, t,
       (SELECT array_agg(lead ORDER BY lead) FROM leadscore.stage_leads(m, s, t))
     = (SELECT array_agg(lead ORDER BY lead) FROM leadscore.scores_at(m, t) WHERE stage = s) AS agree,
       (SELECT count(*) FROM leadscore.stage_leads(m, s, t)) AS leads
  FROM (VALUES ('decay', 'MQL'), ('decay', 'warm'), ('decay', 'cold'), ('grace', 'MQL')) AS x(m, s),
       unnest(ARRAY[timestamptz '2026-03-01', '2026-05-01']) t
 ORDER BY m, s, t;

-- Live changes keep the keys right: new events, a deleted one, a lead changing industry.
INSERT INTO crm.activity SELECT id, 'pricing', '2026-04-30' FROM crm.lead WHERE id % 50 = 0;
DELETE FROM crm.activity WHERE lead = 7 AND kind = 'pricing';
UPDATE crm.lead SET industry = 'Technology', employees = 900 WHERE id BETWEEN 100 AND 120;
SELECT count(*) FILTER (WHERE pg_temp.agree(m, 20, '2026-05-01')) AS agree FROM unnest(ARRAY['decay', 'grace', 'flat']) m;

-- Keys only where asked for; switching hot_index on rescores the model with them.
SELECT m.name, m.hot_index, count(s.hot_key) AS keys, count(*) AS leads
  FROM leadscore.model m JOIN leadscore.state_int4 s ON s.model_id = m.id GROUP BY m.name, m.hot_index ORDER BY m.name;
UPDATE leadscore.model SET hot_index = true WHERE name = 'flat';
SELECT count(s.hot_key) AS keys FROM leadscore.state_int4 s JOIN leadscore.model m ON m.id = s.model_id WHERE m.name = 'flat';
SELECT count(*) FILTER (WHERE pg_temp.agree('flat', n, t)) AS agree
  FROM unnest(ARRAY[1, 10, 100]) n, unnest(ARRAY[timestamptz '2026-02-15', '2026-05-01', '2040-01-01']) t;

-- n = 0 gives nothing; a model without leads too.
SELECT count(*) FROM leadscore.top_leads('decay', 0);
INSERT INTO leadscore.model (name) VALUES ('empty');
SELECT count(*) FROM leadscore.top_leads('empty');

-- Refused: an unknown model or stage, a negative n, NULL arguments.
SELECT * FROM leadscore.top_leads('nope');
SELECT * FROM leadscore.top_leads('decay', -1);
SELECT * FROM leadscore.top_leads(NULL);
SELECT * FROM leadscore.top_leads('decay', 10, NULL);
SELECT * FROM leadscore.stage_leads('decay', 'SQL');
SELECT * FROM leadscore.stage_leads('nope', 'MQL');
SELECT * FROM leadscore.stage_leads('decay', NULL);

DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
