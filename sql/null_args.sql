-- Every function called with NULL arguments gives NULL, nothing or a clear error, never a crash.
CREATE EXTENSION leadscore;
\set SHOW_CONTEXT never
CREATE TABLE lead (id int PRIMARY KEY);
INSERT INTO leadscore.model (name) VALUES ('m');
SELECT leadscore.track_leads(NULL, 'lead', 'id');
SELECT leadscore.track_leads('m', NULL, 'id');
SELECT leadscore.track_leads('m', 'lead', NULL);
SELECT leadscore.track_events(NULL, NULL, NULL, NULL);
SELECT leadscore.untrack(NULL, NULL);
SELECT leadscore.untrack('m', 'lead', NULL);
SELECT leadscore.recompute(NULL);
SELECT * FROM leadscore.scores_at(NULL);
SELECT * FROM leadscore.scores_at('m', NULL);
SELECT * FROM leadscore.explain(NULL, '1');
SELECT * FROM leadscore.explain('m', NULL);
SELECT * FROM leadscore.explain('m', '1', NULL);
SELECT leadscore._eval(NULL::leadscore.state_int4, now());
SELECT leadscore.track_leads('m', 'lead', 'id');
SELECT * FROM leadscore.explain('m', 'not a number');
SELECT * FROM leadscore.explain('nope', '1');
-- 1.5: a model or a lead that does not exist (a typo) is an error, not an empty or all-zero answer.
SELECT * FROM leadscore.scores_at('nope');
SELECT * FROM leadscore.explain('m', '999');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', NULL, 1);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', 'id > 1', NULL);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', '', 1);
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('m', 'r', 'lead', 'NULL', 1);
INSERT INTO lead VALUES (1), (2);
SELECT lead, score FROM leadscore.scores_at('m', '2026-01-01') ORDER BY lead;
-- 1.4: the privilege functions, and the internal ones of the read path, with NULL and odd arguments.
CREATE ROLE regress_null_args;
SELECT leadscore.grant_profile(NULL, 'regress_null_args');
SELECT leadscore.grant_profile('reader', NULL);
SELECT leadscore.grant_profile('superuser', 'regress_null_args');
SELECT leadscore.grant_profile('reader', 'public');  -- PUBLIC is no role: a profile is granted to a role
DROP ROLE regress_null_args;
SELECT leadscore.revoke_profile(NULL, NULL);
SELECT leadscore._may_read(NULL::int, NULL::int), leadscore._may_read(1, NULL::text), leadscore._may_read(NULL, 1);
SELECT leadscore._may_read(12345, 1), leadscore._may_read(1, 'x'::text), leadscore._may_read(1, 1.5);
SELECT leadscore._may_read_named(NULL, NULL), leadscore._may_read_named('nope', '1'), leadscore._may_read_named('m', '1');
SELECT leadscore._may_read_named('m', 'not a number');
SELECT leadscore._check_read(NULL), leadscore._check_read('m');
SELECT leadscore._check_read('nope');
SELECT leadscore._check_condition(NULL, NULL, NULL, NULL);
SELECT leadscore._check_condition('lead', 'id > 1', 'r', 'm');
SELECT leadscore._check_condition('lead', 'id >', 'r', 'm');
SELECT leadscore._check_condition('pg_class', 'true', 'r', 'm');
SELECT leadscore._eval(ROW(1, 2, 3), now());
SELECT leadscore._eval(ROW(1, 'x'::text, true, NULL::float8[], NULL::int8[], NULL::float8[], NULL::timestamptz[],
                           NULL::timestamptz, 0::int8, NULL::timestamptz, NULL::text), now());
DROP TABLE lead;
DROP EXTENSION leadscore;
