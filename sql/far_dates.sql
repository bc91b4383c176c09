-- Timestamps at any distance stay exact (1.4): a mistyped far date, corrected or deleted, leaves no NaN or
-- infinity in any state, score, stage or hottest-leads order, for any half-life, and live scores equal a
-- recompute. (Until 1.4: 2126-01-15 corrected to 2026-01-15 left the lead's state {NaN}.)
CREATE EXTENSION leadscore;
CREATE TABLE lead (id int PRIMARY KEY);
CREATE TABLE ev (id serial PRIMARY KEY, lead int, type text, at timestamptz NOT NULL);
CREATE TABLE note (lead int, at timestamptz NOT NULL);
CREATE INDEX ON ev (lead);
CREATE INDEX ON note (lead);
INSERT INTO leadscore.model (name, half_life, hot_index) VALUES ('month', '30 days', true), ('day', '1 day', false);
SELECT leadscore.track_leads(m, 'lead', 'id'), leadscore.track_events(m, 'ev', 'lead', 'at'),
       leadscore.track_events(m, 'note', 'lead', 'at') FROM unnest(ARRAY['month', 'day']) m;
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT m, r.name, r.src, r.cond, r.points FROM unnest(ARRAY['month', 'day']) m,
  (VALUES ('a', 'ev', $$type = 'a'$$, 10), ('b', 'ev', $$type = 'b'$$, -4), ('n', 'note', 'true', 1)) r(name, src, cond, points);
INSERT INTO leadscore.stage (model, name, min_score)
SELECT m, s.name, s.min FROM unnest(ARRAY['month', 'day']) m, (VALUES ('cold', '-Infinity'::float8), ('MQL', 15)) s(name, min);
INSERT INTO lead SELECT generate_series(1, 4);
INSERT INTO ev (lead, type, at) VALUES (1, 'a', '2026-01-01'), (2, 'a', '2026-01-01'), (3, 'b', '2026-01-01'),
                                       (4, 'a', '2026-01-01'), (1, 'b', '2025-12-01');
INSERT INTO note VALUES (1, '2026-01-02'), (4, '2026-01-03');

CREATE FUNCTION finite_everywhere() RETURNS boolean LANGUAGE sql AS $$
  SELECT NOT EXISTS (SELECT FROM leadscore.state_int4 s, unnest(s.eng_w) w
                      WHERE w IS NULL OR w <> w OR w IN ('Infinity', '-Infinity'))
     AND NOT EXISTS (SELECT FROM leadscore.scores WHERE score <> score OR score IN ('Infinity', '-Infinity') OR stage IS NULL)
     AND NOT EXISTS (SELECT FROM leadscore.top_leads('month', 10) WHERE score <> score)
     -- (a hot key of -Infinity is a lead without positive engagement)
     AND NOT EXISTS (SELECT FROM leadscore.state_int4 WHERE hot_key = 'Infinity' OR hot_key <> hot_key)
$$;
CREATE FUNCTION equal_to_recompute(at timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  CREATE TEMP TABLE live AS SELECT m.name AS model, s.* FROM leadscore.model m, leadscore.scores_at(m.name, at) s;
  PERFORM leadscore.recompute(name) FROM leadscore.model;
  SELECT count(*) INTO n FROM live l FULL JOIN
    (SELECT m.name AS model, s.* FROM leadscore.model m, leadscore.scores_at(m.name, at) s) r USING (model, lead)
   WHERE l.score IS NULL OR r.score IS NULL OR abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score))
      OR l.stage IS DISTINCT FROM r.stage;
  DROP TABLE live;
  RETURN n;
END $$;

-- A century ahead, corrected by UPDATE; a 3-year slip with a 1-day half-life; one on each table.
INSERT INTO ev (lead, type, at) VALUES (1, 'a', '2126-01-15');
UPDATE ev SET at = '2026-01-15' WHERE at = '2126-01-15';
INSERT INTO note VALUES (2, '2029-01-02');
UPDATE note SET at = '2026-01-02' WHERE at = '2029-01-02';
SELECT finite_everywhere();
SELECT equal_to_recompute('2026-02-01') AS differences;
-- The latest timestamp PostgreSQL holds, then deleted; and the earliest, then the far one deleted.
INSERT INTO ev (lead, type, at) VALUES (3, 'a', '294276-12-31'), (4, 'b', '4713-01-01 BC');
SELECT finite_everywhere();
DELETE FROM ev WHERE at = '294276-12-31';
SELECT finite_everywhere();
SELECT equal_to_recompute('2026-02-01') AS differences;
DELETE FROM ev WHERE at < '0001-01-01';
-- A lead whose events span millennia, its latest deleted: the earlier ones count again, exactly.
INSERT INTO ev (lead, type, at) VALUES (2, 'a', '1026-01-01'), (2, 'a', '3026-01-01');
DELETE FROM ev WHERE lead = 2 AND at = '3026-01-01';
SELECT finite_everywhere();
SELECT equal_to_recompute('2026-02-01') AS differences;
SELECT lead, round(score::numeric, 9) AS score, stage FROM leadscore.scores_at('month', '2026-02-01') ORDER BY lead;
SELECT lead, round(score::numeric, 9) AS score FROM leadscore.top_leads('month', 2, '2026-02-01');
-- Both tables in one statement, the latest moving back a century: a clear error, nothing half done.
INSERT INTO ev (lead, type, at) VALUES (4, 'a', '2126-01-01');
WITH d AS (DELETE FROM ev WHERE at = '2126-01-01' RETURNING lead) INSERT INTO note SELECT lead, '2026-01-20' FROM d;
SELECT finite_everywhere();
SELECT equal_to_recompute('2026-02-01') AS differences;
DROP EXTENSION leadscore;
DROP TABLE lead, ev, note;
DROP FUNCTION finite_everywhere(), equal_to_recompute(timestamptz);
