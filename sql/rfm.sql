-- Recency, frequency, volume (leadscore.activity) and RFM segments (leadscore.refresh_rfm), used by the
-- rules of another model (churn) that tracks leadscore.rfm_int4 as an event table, live.
CREATE EXTENSION leadscore;
SET extra_float_digits = 0;
SET TimeZone = 'UTC';
\set SHOW_CONTEXT never
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id int PRIMARY KEY);
CREATE TABLE crm.visit (lead int, at timestamptz);
CREATE TABLE crm.orders (lead int, at timestamp NOT NULL, amount numeric, status text);   -- timestamp: UTC
CREATE TABLE crm.note (lead int, body text);                                               -- no time column
INSERT INTO leadscore.model (name) VALUES ('shop');
SELECT leadscore.track_leads('shop', 'crm.lead', 'id'), leadscore.track_events('shop', 'crm.visit', 'lead', 'at'),
       leadscore.track_events('shop', 'crm.orders', 'lead', 'at'), leadscore.track_events('shop', 'crm.note', 'lead');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('shop', 'order', 'crm.orders', 'true', 10);
INSERT INTO crm.lead SELECT generate_series(1, 10);
-- Lead 11 has events but no lead row; lead 9 only a note (no time); lead 10 nothing. Not events: a visit
-- without lead, without time or at infinity. Lead 8 has a visit dated after the as_of used below.
INSERT INTO crm.visit
SELECT l, at FROM (VALUES (1, timestamptz '2026-03-31 10:00', 3), (1, '2026-03-20', 2), (2, '2026-03-30', 1),
                          (2, '2026-01-10', 3), (3, '2026-03-25', 4), (3, NULL, 1), (3, 'infinity', 1),
                          (4, '2026-02-15', 6), (5, '2026-03-29', 2), (6, '2026-03-10', 3), (7, '2026-01-05', 1),
                          (8, '2026-03-31', 1), (8, '2026-05-01', 1), (11, '2026-03-15', 2), (NULL, '2026-03-31', 1)
                  ) v (l, at, n), generate_series(1, n);
INSERT INTO crm.orders VALUES
	(1, '2026-03-31 12:00', 100, 'paid'), (1, '2026-03-01 12:00', 1000, 'paid'), (2, '2026-03-15', 500, 'paid'),
	(3, '2026-03-25', 50, 'paid'), (3, '2026-03-26', NULL, 'open'), (5, '2026-03-02 00:00', 7, 'paid'),
	(6, '2026-04-01 00:00', 1, 'paid'), (6, '2026-03-10', 300, 'paid'), (11, '2026-03-16', 20, 'paid');
INSERT INTO crm.note VALUES (9, 'call me'), (1, 'vip');

-- At 1 April, over 30 days: the period is (2 March 00:00, 1 April 00:00], both ends as written (the order
-- of lead 5 at 2 March 00:00 is out, the order of lead 6 at 1 April 00:00 in). Lead 1: 8 events (5 visits,
-- 2 orders, 1 note), 6 in the period (the order of 1 March is out), volume 100; lead 8's visit of May is
-- not yet; lead 9's note counts in events, not in the period; lead 10 is there with nothing.
SELECT * FROM leadscore.activity('shop', '30 days', 'amount', '2026-04-01') ORDER BY lead::int;
-- Without a volume column, volume is NULL; the default period is 90 days (1 January to 1 April).
SELECT lead, events_in_period, volume FROM leadscore.activity('shop', as_of => '2026-04-01') ORDER BY lead::int;
-- In the past (1 March, 30 days: 30 January to 1 March): only what had happened by then.
SELECT * FROM leadscore.activity('shop', '30 days', 'amount', '2026-03-01') WHERE events > 0 ORDER BY lead::int;
-- The last activity is the one of the scores at the same instant (a timestamp column read as UTC, in any
-- session time zone).
SET TimeZone = 'Asia/Tokyo';
SELECT count(*) AS leads, count(*) FILTER (WHERE a.last_activity IS NOT DISTINCT FROM s.last_activity) AS same
  FROM leadscore.activity('shop', '30 days', NULL, '2026-04-01') a
  JOIN leadscore.scores_at('shop', '2026-04-01') s USING (lead);
SET TimeZone = 'UTC';
-- The score views count every event of a lead, whatever its time (lead 8: 2, the May visit too).
SELECT lead, score, last_activity, events FROM leadscore.scores_int4 WHERE model = 'shop' ORDER BY lead;
SELECT lead, events FROM leadscore.scores WHERE model = 'shop' AND lead IN ('8', '9', '10') ORDER BY lead;

-- RFM over 30 days with amount. Quintiles by mid-rank: floor(5 x (leads below + half the leads equal) / n)
-- + 1; ties share a quintile. R among the 9 leads with an activity, by last activity: 7 (5 Jan), 4 (15 Feb),
-- 11, 3, 5, 2, 8, 1, 6 (1 Apr) -> 1 1 2 2 3 4 4 5 5; leads 9 and 10: 1. F among the 7 leads with events in
-- the period: 8 (1), 2 and 5 (2), 11 (3), 6 (5), 1 and 3 (6) -> 1, 2, 2, 3, 4, 5, 5; M among the same 7, by
-- amount: 5 and 8 (0), 11 (20), 3 (50), 1 (100), 6 (301), 2 (500) -> 1, 1, 2, 3, 4, 4, 5; the others 1 and 1.
SELECT leadscore.refresh_rfm('shop', '30 days', 'amount', '2026-04-01') AS written;
SELECT lead, as_of, last_activity, recency, frequency, volume, r, f, m, code FROM leadscore.rfm ORDER BY lead::int;
SELECT model, period, volume_column, as_of, leads, changed FROM leadscore.rfm_refresh;
-- Over 90 days F and M change (lead 4's 6 visits of February count: 141, was frequent, now quiet); the
-- rows of leads 8, 9 and 10 stay as they were, not rewritten.
CREATE TEMP TABLE before AS SELECT lead, xmin::text AS x FROM leadscore.rfm_int4;
SELECT leadscore.refresh_rfm('shop', '90 days', 'amount', '2026-04-01') AS written;
SELECT lead, frequency, volume, r, f, m, code FROM leadscore.rfm ORDER BY lead::int;
SELECT array_agg(b.lead ORDER BY b.lead) AS untouched FROM before b JOIN leadscore.rfm_int4 r ON r.lead = b.lead
 WHERE r.xmin::text = b.x;
-- The same refresh again writes nothing.
SELECT leadscore.refresh_rfm('shop', '90 days', 'amount', '2026-04-01') AS written;

-- A churn model scores the segments: it tracks leadscore.rfm_int4 as an event table without time.
INSERT INTO leadscore.model (name) VALUES ('churn');
SELECT leadscore.track_leads('churn', 'crm.lead', 'id'), leadscore.track_events('churn', 'leadscore.rfm_int4', 'lead');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('churn', 'was frequent, now quiet', 'leadscore.rfm_int4', 'model = ''shop'' AND r <= 2 AND f >= 4', 50),
	('churn', 'dormant', 'leadscore.rfm_int4', 'model = ''shop'' AND code = ''111''', 10);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('churn', 'at risk', 50);
SELECT tgname FROM pg_trigger WHERE tgrelid = 'leadscore.rfm_int4'::regclass AND tgname LIKE 'leadscore%' ORDER BY 1;
SELECT lead, score, stage FROM leadscore.scores_int4 WHERE model = 'churn' AND score <> 0 ORDER BY lead;
-- A refresh writes only what changed, and the churn scores follow live: lead 10 leaves the lead table (its
-- row goes), lead 12 comes (a row 111, no activity: the quintiles of the others do not move); then lead 4
-- comes back on 31 March 23:00 (r 5, f 5 with 7 events: 551, no longer at risk): rows of 1 (455), 2 (335),
-- 4, 5 (222) and 11 (123) change, those of 3 (244), 6 (534), 7, 8, 9 and 12 stay.
DELETE FROM crm.lead WHERE id = 10;
INSERT INTO crm.lead VALUES (12);
SELECT leadscore.refresh_rfm('shop', '90 days', 'amount', '2026-04-01') AS written;
SELECT lead, score, stage FROM leadscore.scores_int4 WHERE model = 'churn' AND score <> 0 ORDER BY lead;
INSERT INTO crm.visit VALUES (4, '2026-03-31 23:00');
TRUNCATE before;
INSERT INTO before SELECT lead, xmin::text FROM leadscore.rfm_int4;
SELECT leadscore.refresh_rfm('shop', '90 days', 'amount', '2026-04-01') AS written;
SELECT lead, r, f, m, code FROM leadscore.rfm ORDER BY lead::int;
SELECT array_agg(b.lead ORDER BY b.lead) AS untouched FROM before b JOIN leadscore.rfm_int4 r ON r.lead = b.lead
 WHERE r.xmin::text = b.x;
SELECT lead, score, stage FROM leadscore.scores_int4 WHERE model = 'churn' AND score <> 0 ORDER BY lead;
SELECT lead, from_stage, to_stage, score FROM leadscore.stage_changes WHERE model = 'churn' ORDER BY id;
-- Live equals a recompute.
CREATE TEMP TABLE live AS SELECT lead, score FROM leadscore.scores_at('churn', '2026-04-01');
SELECT leadscore.recompute('churn');
SELECT count(*) AS leads, count(*) FILTER (WHERE l.score = s.score) AS same
  FROM live l JOIN leadscore.scores_at('churn', '2026-04-01') s USING (lead);
-- explain names the RFM rule.
SELECT rule, kind, hits, weighted FROM leadscore.explain('churn', '3', '2026-04-01') ORDER BY rule;

-- pg_dump leaves out the triggers of an extension's tables: after a restore the churn model has none on
-- rfm_int4; the next refresh puts them back and recomputes the model (here they are dropped by hand).
DROP TRIGGER leadscore_insert ON leadscore.rfm_int4;
DROP TRIGGER leadscore_update ON leadscore.rfm_int4;
DROP TRIGGER leadscore_delete ON leadscore.rfm_int4;
DROP TRIGGER leadscore_truncate ON leadscore.rfm_int4;
DELETE FROM leadscore.state_int4 WHERE model_id = (SELECT id FROM leadscore.model WHERE name = 'churn');
SELECT leadscore.refresh_rfm('shop', '90 days', 'amount', '2026-04-01') AS written;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'leadscore.rfm_int4'::regclass AND tgname LIKE 'leadscore%';
SELECT lead, score, stage FROM leadscore.scores_int4 WHERE model = 'churn' AND score <> 0 ORDER BY lead;

-- Without a volume column m is NULL and the code has two digits; a text-keyed model has its rows in
-- rfm_text. Two leads with activity, mid-ranks 1/4 and 3/4 -> quintiles 2 and 4: r: 'a' older (2), 'b'
-- (4); f: 'a' 2 events (4), 'b' 1 (2): codes 24 and 42.
CREATE TABLE crm.account (id text PRIMARY KEY);
CREATE TABLE crm.hit (account varchar, at timestamptz);
INSERT INTO leadscore.model (name) VALUES ('web');
SELECT leadscore.track_leads('web', 'crm.account', 'id'), leadscore.track_events('web', 'crm.hit', 'account', 'at');
INSERT INTO crm.account VALUES ('a'), ('b');
INSERT INTO crm.hit VALUES ('a', '2026-03-01'), ('a', '2026-03-02'), ('b', '2026-03-20');
SELECT leadscore.refresh_rfm('web', '90 days', NULL, '2026-04-01') AS written;
SELECT model, lead, recency, frequency, volume, r, f, m, code FROM leadscore.rfm WHERE model = 'web' ORDER BY lead;
SELECT count(*) FROM leadscore.rfm_text;

-- Bad input: clear errors.
SELECT * FROM leadscore.activity('nope');
SELECT * FROM leadscore.activity('shop', '0 days');
SELECT * FROM leadscore.activity('shop', '-1 day');
SELECT * FROM leadscore.activity('shop', '1 month -31 days');
SELECT * FROM leadscore.activity('shop', '30 days', 'nope');
SELECT * FROM leadscore.activity('shop', '30 days', 'status');
SELECT * FROM leadscore.activity('shop', '30 days', 'body');
SELECT * FROM leadscore.activity('shop', as_of => 'infinity');
SELECT * FROM leadscore.activity(NULL);
SELECT * FROM leadscore.activity('shop', NULL);
SELECT * FROM leadscore.activity('shop', '30 days', NULL, NULL);
SELECT leadscore.refresh_rfm('nope');
SELECT leadscore.refresh_rfm('shop', '0 days');
SELECT leadscore.refresh_rfm('shop', '30 days', 'status');
SELECT leadscore.refresh_rfm(NULL);
SELECT leadscore.refresh_rfm('shop', as_of => NULL);
-- A numeric domain is a number; a model with no table has no activity.
CREATE DOMAIN crm.money_amount AS numeric CHECK (VALUE >= 0);
ALTER TABLE crm.note ADD COLUMN tip crm.money_amount;
SELECT lead, events, volume FROM leadscore.activity('shop', '30 days', 'tip', '2026-04-01') WHERE lead = '9';
INSERT INTO leadscore.model (name) VALUES ('empty');
SELECT * FROM leadscore.activity('empty');
SELECT leadscore.refresh_rfm('empty');
-- refresh_rfm is for the owner (and roles it grants it to), like recompute; activity reads the tables as
-- its caller. The segments are not readable by PUBLIC (volume sums a column of the CRM), the scores are.
SELECT has_function_privilege('public', 'leadscore.refresh_rfm(text, interval, name, timestamptz)', 'EXECUTE') AS refresh,
       has_function_privilege('public', 'leadscore.activity(text, interval, name, timestamptz)', 'EXECUTE') AS activity,
       has_table_privilege('public', 'leadscore.rfm', 'SELECT') AS rfm,
       has_table_privilege('public', 'leadscore.rfm_int4', 'SELECT') AS rfm_int4,
       has_table_privilege('public', 'leadscore.scores', 'SELECT') AS scores;

-- Deleting a model deletes its segments (and the churn scores follow); untracking removes the triggers;
-- DROP EXTENSION goes cleanly with a model tracking an RFM table.
DELETE FROM leadscore.model WHERE name IN ('web', 'shop');
SELECT (SELECT count(*) FROM leadscore.rfm_text) AS text, (SELECT count(*) FROM leadscore.rfm_int4) AS int4,
       (SELECT count(*) FROM leadscore.rfm_refresh) AS refreshes;
SELECT lead, score, stage FROM leadscore.scores_int4 WHERE model = 'churn' AND score <> 0 ORDER BY lead;
SELECT leadscore.untrack('churn', 'leadscore.rfm_int4', cascade => true);
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'leadscore.rfm_int4'::regclass AND tgname LIKE 'leadscore%';
SELECT leadscore.track_events('churn', 'leadscore.rfm_int4', 'lead');
DROP EXTENSION leadscore;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgname LIKE 'leadscore%';
DROP SCHEMA crm CASCADE;
