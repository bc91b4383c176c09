-- Schema changes of tracked tables (1.4): an ALTER TABLE that would break a tracking or a rule is refused
-- at the DDL, naming the model and rule; a compatible type change rescores the model (exact); nothing is
-- accepted and then fails every later write of the CRM, nothing makes a score silently wrong.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id text PRIMARY KEY, employees int, country text);
CREATE TABLE crm.activity (lead_id text, type text, at timestamptz NOT NULL, note text);
CREATE INDEX ON crm.activity (lead_id);
INSERT INTO leadscore.model (name, half_life) VALUES ('m', '30 days');
SELECT leadscore.track_leads('m', 'crm.lead', 'id');
SELECT leadscore.track_events('m', 'crm.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
  ('m', 'big', 'crm.lead', 'employees >= 100', 10),
  ('m', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15);
INSERT INTO crm.lead VALUES ('a', 150, 'FR'), ('b', 20, 'DE');
INSERT INTO crm.activity VALUES ('a', 'webinar', '2026-01-01', NULL), ('b', 'webinar', '2026-01-02', NULL);
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('m', '2026-01-10') ORDER BY lead;

-- The lead column or the key to another type (was a crash at the next insert): refused.
ALTER TABLE crm.activity ALTER COLUMN lead_id TYPE bigint USING NULL;
ALTER TABLE crm.lead ALTER COLUMN id TYPE varchar(20);   -- text and varchar are one key type: accepted
ALTER TABLE crm.lead ALTER COLUMN id TYPE int USING CASE id WHEN 'a' THEN 1 ELSE 2 END;
-- The time column to date or text (was: later inserts not scored, a recompute gave 1e-94): refused.
ALTER TABLE crm.activity ALTER COLUMN at TYPE date;
ALTER TABLE crm.activity ALTER COLUMN at TYPE text;
ALTER TABLE crm.activity ALTER COLUMN at TYPE timestamp;  -- read as UTC, as when tracked so: accepted
ALTER TABLE crm.activity ALTER COLUMN at TYPE timestamptz;
-- Renaming or dropping a column a rule or the tracking uses (was: every later insert failed): refused.
ALTER TABLE crm.lead RENAME COLUMN employees TO staff;
ALTER TABLE crm.activity RENAME COLUMN type TO kind;
ALTER TABLE crm.activity RENAME COLUMN at TO occurred_at;
ALTER TABLE crm.lead DROP COLUMN employees;
ALTER TABLE crm.activity DROP COLUMN type CASCADE;
-- A column no rule reads: renamed, dropped, retyped freely.
ALTER TABLE crm.activity RENAME COLUMN note TO comment;
ALTER TABLE crm.activity ALTER COLUMN comment TYPE varchar(100);
ALTER TABLE crm.activity DROP COLUMN comment;
ALTER TABLE crm.lead ADD COLUMN industry text;
-- A compatible type change of a rule's column: accepted, the model rescored (exact).
ALTER TABLE crm.lead ALTER COLUMN employees TYPE numeric USING employees / 2.0;
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('m', '2026-01-10') ORDER BY lead;
-- A type the condition no longer fits: refused.
ALTER TABLE crm.lead ALTER COLUMN employees TYPE text;
-- The CRM writes as before.
INSERT INTO crm.lead VALUES ('c', 500, 'ES');
INSERT INTO crm.activity VALUES ('c', 'webinar', '2026-01-05');
CREATE TEMP TABLE live AS SELECT * FROM leadscore.scores_at('m', '2026-01-10');
SELECT leadscore.recompute('m');
SELECT count(*) AS differences FROM live l FULL JOIN leadscore.scores_at('m', '2026-01-10') r USING (lead)
 WHERE l.score IS DISTINCT FROM r.score;
-- The workflow to rename a rule's column: disable the rule, rename, rewrite and enable it, in one transaction.
BEGIN;
UPDATE leadscore.rule SET enabled = false WHERE name = 'big';
ALTER TABLE crm.lead RENAME COLUMN employees TO staff;
UPDATE leadscore.rule SET condition = 'staff >= 100', enabled = true WHERE name = 'big';
COMMIT;
SELECT lead, round(score::numeric, 6) AS score FROM leadscore.scores_at('m', '2026-01-10') ORDER BY lead;
DROP EXTENSION leadscore;
DROP SCHEMA crm CASCADE;
