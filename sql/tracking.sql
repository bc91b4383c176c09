-- Tracking the CRM's own tables: key types, events of unknown or NULL leads, failed statements,
-- TRUNCATE, untracking, dropped tables, DROP EXTENSION.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.contact (id uuid PRIMARY KEY, email text);
CREATE TABLE crm.visit (contact uuid, page text, at timestamptz);
CREATE TABLE crm.company (code text PRIMARY KEY, size int);
CREATE TABLE crm.signal (company varchar, kind text);
INSERT INTO leadscore.model (name, half_life) VALUES ('web', '7 days');
INSERT INTO leadscore.model (name) VALUES ('accounts');
SELECT leadscore.track_leads('web', 'crm.contact', 'id');
SELECT leadscore.track_events('web', 'crm.visit', 'contact', 'at');
SELECT leadscore.track_leads('accounts', 'crm.company', 'code');
-- Without a time column (the model does not decay): events count from their insert, never decay.
SELECT leadscore.track_events('accounts', 'crm.signal', 'company');
SELECT model, relid, role, lead_column, time_column, key_type FROM leadscore.tracked_table ORDER BY model, relid;
SELECT tgrelid::regclass, tgname FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'crm.%' ORDER BY 1, 2;

INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('web', 'work email', 'crm.contact', $$email NOT LIKE '%@gmail.com'$$, 5),
	('web', 'visit', 'crm.visit', 'true', 2),
	('web', 'first pricing visit', 'crm.visit', $$page = 'pricing'$$, 10),
	('accounts', 'big', 'crm.company', 'size >= 100', 20),
	('accounts', 'intent', 'crm.signal', $$kind = 'intent'$$, 3);
UPDATE leadscore.rule SET once_per_lead = true WHERE name = 'first pricing visit';

INSERT INTO crm.contact VALUES ('00000000-0000-0000-0000-000000000001', 'a@acme.com');
INSERT INTO crm.visit VALUES
	('00000000-0000-0000-0000-000000000001', 'pricing', '2026-03-01'),
	('00000000-0000-0000-0000-000000000001', 'pricing', '2026-03-08'),
	-- a contact that is not (yet) in the contact table: scored under its key, fit 0
	('00000000-0000-0000-0000-000000000002', 'home', '2026-03-08'),
	-- no contact at all, no time: not an event
	(NULL, 'pricing', '2026-03-08'),
	('00000000-0000-0000-0000-000000000001', 'home', NULL);
-- once per lead: only the first pricing visit counts (10 x 0.5 after 7 days); visits 2 x (0.5 + 1)
SELECT lead, round(score::numeric, 6) AS score, round(fit::numeric, 6) AS fit, last_activity
  FROM leadscore.scores_at('web', '2026-03-08') ORDER BY lead;
-- The contact arrives: its fit joins the engagement already there.
INSERT INTO crm.contact VALUES ('00000000-0000-0000-0000-000000000002', 'b@corp.com');
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('web', '2026-03-08') ORDER BY lead;
-- Deleting the first pricing visit: the second one becomes the first.
DELETE FROM crm.visit WHERE at = '2026-03-01';
SELECT rule, hits, round(decayed::numeric, 6) AS decayed
  FROM leadscore.explain('web', '00000000-0000-0000-0000-000000000001', '2026-03-08') ORDER BY rule;

INSERT INTO crm.company VALUES ('ACME', 250), ('TINY', 3);
INSERT INTO crm.signal VALUES ('ACME', 'intent'), ('ACME', 'intent'), ('ZED', 'intent');
SELECT lead, score FROM leadscore.scores_at('accounts', '2030-01-01') ORDER BY lead;
SELECT model, lead, score FROM leadscore.scores_text ORDER BY lead;

-- Tracking a table that already has rows scores them at once.
CREATE TABLE crm.prospect (code text PRIMARY KEY);
INSERT INTO crm.prospect VALUES ('P1'), ('P2');
INSERT INTO leadscore.model (name) VALUES ('prospects');
SELECT leadscore.track_leads('prospects', 'crm.prospect', 'code');
SELECT lead, score FROM leadscore.scores WHERE model = 'prospects' ORDER BY lead;
DELETE FROM leadscore.model WHERE name = 'prospects';

-- Conditions resolve names in pg_catalog alone, wherever they are compiled: a user function is named with
-- its schema (unqualified, it is not found), and scored by the trigger.
CREATE FUNCTION public.is_big(n int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT n >= 200';
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('accounts', 'really big', 'crm.company', 'is_big(size)', 7);
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('accounts', 'really big', 'crm.company', 'public.is_big(size)', 7);
INSERT INTO crm.company VALUES ('HUGE', 900);
SELECT lead, score FROM leadscore.scores_at('accounts', '2030-01-01') WHERE lead IN ('ACME', 'HUGE') ORDER BY lead;
DELETE FROM crm.company WHERE code = 'HUGE';
DELETE FROM leadscore.rule WHERE name = 'really big';
DROP FUNCTION public.is_big(int);

-- A failed statement leaves the scores as they were.
CREATE TEMP TABLE before AS SELECT * FROM leadscore.scores_at('accounts', '2030-01-01');
BEGIN;
INSERT INTO crm.signal VALUES ('ACME', 'intent');
INSERT INTO crm.company VALUES ('ACME', 1);  -- duplicate key
COMMIT;
INSERT INTO crm.signal SELECT 'TINY', CASE WHEN g < 3 THEN 'intent' ELSE (1 / (g - 3))::text END
  FROM generate_series(1, 3) g;
SELECT count(*) AS changed FROM before b FULL JOIN leadscore.scores_at('accounts', '2030-01-01') a USING (lead)
 WHERE a.score IS DISTINCT FROM b.score;
-- A rule whose condition fails at run time fails the statement, which leaves scores unchanged too.
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('accounts', 'ratio', 'crm.company', '100 / size > 1', 1);
UPDATE crm.company SET size = 0 WHERE code = 'TINY';
SELECT count(*) AS changed FROM before b FULL JOIN leadscore.scores_at('accounts', '2030-01-01') a USING (lead)
 WHERE a.score IS DISTINCT FROM b.score AND b.lead <> 'TINY';
DELETE FROM leadscore.rule WHERE name = 'ratio';

-- UPDATE of a lead key moves the lead's fit; TRUNCATE clears what the table gave.
UPDATE crm.company SET code = 'ACME2' WHERE code = 'ACME';
SELECT lead, score FROM leadscore.scores_at('accounts', '2030-01-01') ORDER BY lead;
TRUNCATE crm.signal;
SELECT lead, score FROM leadscore.scores_at('accounts', '2030-01-01') ORDER BY lead;

-- Untracking: refused while rules use the table, unless cascade; the triggers go with the last model.
SELECT leadscore.untrack('accounts', 'crm.signal', cascade => true);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'crm.signal'::regclass;
SELECT name FROM leadscore.rule WHERE model = 'accounts' ORDER BY name;
-- A dropped table stops being tracked.
DROP TABLE crm.visit;
SELECT model, relid FROM leadscore.tracked_table ORDER BY model, relid;
SELECT name FROM leadscore.rule WHERE model = 'web' ORDER BY name;
-- A deleted model takes its rules, tracking and scores with it.
DELETE FROM leadscore.model WHERE name = 'web';
SELECT count(*) FROM leadscore.state_uuid;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'crm.contact'::regclass;

-- The CRM's own roles need no privilege on leadscore's tables to write theirs; they read nothing of
-- leadscore until granted (1.4), and then the leads they see in the lead table.
CREATE ROLE crm_app;
GRANT USAGE ON SCHEMA crm TO crm_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.company TO crm_app;
SET ROLE crm_app;
INSERT INTO crm.company VALUES ('APP', 500);
SELECT lead, score FROM leadscore.scores WHERE model = 'accounts' ORDER BY lead;
UPDATE leadscore.rule SET points = 1;
SELECT leadscore.recompute('accounts');
RESET ROLE;
SELECT leadscore.grant_profile('reader', 'crm_app');
SET ROLE crm_app;
SELECT lead, score FROM leadscore.scores WHERE model = 'accounts' ORDER BY lead;
UPDATE leadscore.rule SET points = 1;
RESET ROLE;
SELECT leadscore.revoke_profile('reader', 'crm_app');

-- DROP EXTENSION removes leadscore's triggers and leaves the CRM's tables and rows.
DROP EXTENSION leadscore;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'crm.company'::regclass;
SELECT * FROM crm.company ORDER BY code;
INSERT INTO crm.company VALUES ('NEW', 1);
DROP SCHEMA crm CASCADE;
DROP ROLE crm_app;
