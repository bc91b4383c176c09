-- The B2B fit model, then its weighted variant (sector 25%, size 30%, engagement 35%, location 10%),
-- floor and ceiling, fit and engagement grades.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.account (id int PRIMARY KEY, name text, email text, industry text, employees int, country text);
CREATE TABLE crm.touch (lead int, kind text, at timestamptz);

INSERT INTO leadscore.model (name) VALUES ('b2b');
SELECT leadscore.track_leads('b2b', 'crm.account', 'id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('b2b', 'industry technology', 'crm.account', $$industry = 'Technology'$$, 10),
	('b2b', 'industry retail', 'crm.account', $$industry = 'Retail'$$, 8),
	('b2b', 'industry other', 'crm.account', $$industry IS NULL OR industry NOT IN ('Technology', 'Retail')$$, 5),
	('b2b', 'size 100-500', 'crm.account', $$employees BETWEEN 100 AND 500$$, 15),
	('b2b', 'size 501-1000', 'crm.account', $$employees BETWEEN 501 AND 1000$$, 10),
	('b2b', 'size other', 'crm.account', $$employees IS NULL OR employees < 100 OR employees > 1000$$, 5),
	('b2b', 'target country', 'crm.account', $$country IN ('FR', 'DE')$$, 10),
	('b2b', 'secondary country', 'crm.account', $$country IN ('BE', 'CH', 'ES')$$, 5),
	('b2b', 'personal email', 'crm.account',
	 $$split_part(lower(email), '@', 2) IN ('gmail.com', 'yahoo.com', 'hotmail.com', 'outlook.com')$$, -10),
	('b2b', 'fake name', 'crm.account', $$lower(name) ~ '^(azerty|qwerty|asdf|test)'$$, -30);
INSERT INTO crm.account VALUES
	(1, 'Acme', 'jo@acme.com', 'Technology', 300, 'FR'),
	(2, 'Shop', 'amy@gmail.com', 'Retail', 800, 'ES'),
	(3, 'asdf', 'x@yahoo.com', NULL, 5, 'US');
SELECT lead, score, fit, engagement FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;
-- A lead's attributes change: its fit follows.
UPDATE crm.account SET employees = 600, country = 'US' WHERE id = 1;
SELECT lead, score FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;
UPDATE crm.account SET employees = 300, country = 'FR' WHERE id = 1;
-- Deleting a lead removes its score.
DELETE FROM crm.account WHERE id = 3;
SELECT lead, score FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;

-- Weighted variant: a Technology lead of 300 employees in the main zone, engagement 20.
SELECT leadscore.track_events('b2b', 'crm.touch', 'lead', 'at');
INSERT INTO leadscore.category (model, name, weight) VALUES
	('b2b', 'sector', 0.25), ('b2b', 'size', 0.30), ('b2b', 'engagement', 0.35), ('b2b', 'location', 0.10);
UPDATE leadscore.rule SET category = 'sector' WHERE model = 'b2b' AND name LIKE 'industry%';
UPDATE leadscore.rule SET category = 'size' WHERE model = 'b2b' AND name LIKE 'size%';
UPDATE leadscore.rule SET category = 'location' WHERE model = 'b2b' AND name LIKE '%country';
INSERT INTO leadscore.rule (model, name, source, condition, points, category) VALUES
	('b2b', 'meeting', 'crm.touch', $$kind = 'meeting'$$, 20, 'engagement');
INSERT INTO crm.touch VALUES (1, 'meeting', '2026-01-01');
INSERT INTO leadscore.stage VALUES ('b2b', 'low', '-Infinity'), ('b2b', 'medium', 10), ('b2b', 'high', 15);
-- 2.5 + 4.5 + 7 + 1 = 15: high.
SELECT lead, round(score::numeric, 6) AS score, round(fit::numeric, 6) AS fit,
       round(engagement::numeric, 6) AS engagement, stage
  FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;
SELECT rule, kind, category, hits, points, round(weighted::numeric, 6) AS weighted
  FROM leadscore.explain('b2b', '1', '2026-01-01') WHERE hits > 0 ORDER BY rule;

-- A category cap binds: engagement capped at 10 points before weighting (0.35 x 10 = 3.5).
UPDATE leadscore.category SET cap = 10 WHERE model = 'b2b' AND name = 'engagement';
SELECT lead, round(score::numeric, 6) AS score, round(engagement::numeric, 6) AS engagement
  FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;

-- Floor and ceiling clamp the score; explain shows the clamp as a line of its own.
UPDATE leadscore.model SET floor = 0, ceiling = 12 WHERE name = 'b2b';
SELECT lead, round(score::numeric, 6) AS score, stage FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;
SELECT round(sum(weighted)::numeric, 6) AS explained FROM leadscore.explain('b2b', '1', '2026-01-01');

-- Grades: fit bands A/B/C and engagement bands 1/2/3.
UPDATE leadscore.model SET floor = NULL, ceiling = NULL WHERE name = 'b2b';
INSERT INTO leadscore.grade_band VALUES
	('b2b', 'fit', 'C', '-Infinity'), ('b2b', 'fit', 'B', 5), ('b2b', 'fit', 'A', 8),
	('b2b', 'engagement', '3', '-Infinity'), ('b2b', 'engagement', '2', 1), ('b2b', 'engagement', '1', 3);
SELECT lead, grade FROM leadscore.scores_at('b2b', '2026-01-01') ORDER BY lead;
SELECT model, lead, grade FROM leadscore.scores_int4 ORDER BY lead;

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
