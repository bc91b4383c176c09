-- A bad rule is refused when it is written, with an error that names the rule and the problem.
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, industry text, employees int, revenue numeric);
CREATE TABLE crm.activity (lead_id bigint, type text, url text, at timestamptz);
CREATE TABLE crm.other (x int);
INSERT INTO leadscore.model (name, half_life) VALUES ('saas', '30 days');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'at');
\set VERBOSITY default
\set SHOW_CONTEXT never
-- unknown column
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'pricing', 'crm.activity', $$urll LIKE '%/pricing%'$$, 10);
-- not a boolean
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('saas', 'size', 'crm.lead', 'employees', 1);
-- syntax error
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'typo', 'crm.activity', $$type = 'webinar' AND$$, 1);
-- more than one expression
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'sneaky', 'crm.activity', $$true FROM pg_class$$, 1);
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'sneaky', 'crm.activity', $$true; DROP TABLE crm.lead$$, 1);
-- subquery
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'sub', 'crm.activity', $$lead_id IN (SELECT id FROM crm.lead)$$, 1);
-- aggregate
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'agg', 'crm.activity', $$count(*) > 3$$, 1);
-- window function
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'win', 'crm.activity', $$row_number() OVER () > 3$$, 1);
-- set-returning function
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'srf', 'crm.activity', $$generate_series(1, 2) > 1$$, 1);
-- volatile function
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'dice', 'crm.activity', $$random() < 0.5$$, 1);
-- stable function: the score would depend on when it is computed
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'recent', 'crm.activity', $$at > now() - interval '7 days'$$, 1);
-- system column
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'sys', 'crm.activity', $$ctid IS NOT NULL$$, 1);
-- non-finite points, bad caps: constraints of leadscore.rule (terse: the failing row names its author, the
-- role running the tests)
\set VERBOSITY terse
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'inf', 'crm.activity', $$type = 'webinar'$$, 'Infinity');
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'nan', 'crm.activity', $$type = 'webinar'$$, 'NaN');
INSERT INTO leadscore.rule (model, name, source, condition, points, cap)
	VALUES ('saas', 'cap', 'crm.activity', $$type = 'webinar'$$, -20, -20);
INSERT INTO leadscore.rule (model, name, source, condition, points, cap)
	VALUES ('saas', 'cap', 'crm.activity', $$type = 'webinar'$$, 5, 'Infinity');
INSERT INTO leadscore.rule (model, name, source, condition, points, cap)
	VALUES ('saas', 'cap', 'crm.activity', $$type = 'webinar'$$, 5, 'NaN');
BEGIN;
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'fine', 'crm.activity', $$type = 'webinar'$$, 5);
UPDATE leadscore.rule SET points = '-Infinity' WHERE model = 'saas' AND name = 'fine';
ROLLBACK;
\set VERBOSITY default
-- unknown model
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('nope', 'x', 'crm.activity', $$type = 'webinar'$$, 1);
-- untracked table
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('saas', 'x', 'crm.other', 'x > 1', 1);
-- once per lead on the lead table
INSERT INTO leadscore.rule (model, name, source, condition, points, once_per_lead)
	VALUES ('saas', 'once', 'crm.lead', $$industry = 'Retail'$$, 1, true);
-- unknown category
INSERT INTO leadscore.rule (model, name, source, condition, points, category)
	VALUES ('saas', 'cat', 'crm.lead', $$industry = 'Retail'$$, 1, 'nope');
-- an UPDATE is checked like an INSERT, and a refused statement changes nothing
INSERT INTO leadscore.rule (model, name, source, condition, points)
	VALUES ('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15);
UPDATE leadscore.rule SET condition = 'type = 1' WHERE name = 'webinar';
SELECT name, condition, points FROM leadscore.rule ORDER BY name;

-- models, categories, stages with bad values
INSERT INTO leadscore.model (name, half_life) VALUES ('neg', '-1 day');
INSERT INTO leadscore.model (name, floor, ceiling) VALUES ('clamp', 10, 0);
INSERT INTO leadscore.category (model, name, weight) VALUES ('saas', 'w', 'NaN');
INSERT INTO leadscore.category (model, name, cap) VALUES ('saas', 'c', 0);
INSERT INTO leadscore.stage VALUES ('saas', 'top', 'Infinity');

-- tracking errors
SELECT leadscore.track_leads('nope', 'crm.lead', 'id');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
INSERT INTO leadscore.model (name) VALUES ('other');
SELECT leadscore.track_events('other', 'crm.activity', 'lead_id');
SELECT leadscore.track_leads('other', 'crm.lead', 'industry_x');
SELECT leadscore.track_leads('other', 'crm.lead', 'revenue');
SELECT leadscore.track_leads('other', 'crm.lead', 'employees');
SELECT leadscore.track_events('other', 'crm.activity', 'lead_id');
SELECT leadscore.track_events('saas', 'crm.other', 'x', 'x');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'at');
CREATE TABLE crm.notimed (lead_id bigint, type text);
SELECT leadscore.track_events('saas', 'crm.notimed', 'lead_id');
SELECT leadscore.untrack('saas', 'crm.other');
SELECT leadscore.untrack('saas', 'crm.activity');
SELECT leadscore.untrack('saas', 'crm.lead');
SELECT leadscore.recompute('nope');

DROP SCHEMA crm CASCADE;
DROP EXTENSION leadscore;
