#!/usr/bin/env bash
# Dump and restore: a CRM scored by three models (bigint and text lead keys, categories, stages, grades,
# a stage history, a partitioned event table, a model of RFM segments) is dumped with pg_dump (custom format) and restored with pg_restore into a fresh
# database; after `SELECT leadscore.recompute(name) FROM leadscore.model` the restored database must have
# the same configuration, the CRM's triggers, live scoring, the same scores and the same stage history.
# Run against a throwaway server: scripts/with_pg.sh bash test/dump/dump_restore.sh
# Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
set -euo pipefail

src=leadscore_dump_src
dst=leadscore_dump_dst
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

source "$(dirname "${BASH_SOURCE[0]}")/../pylib/checks.sh"
# q DB SQL: one query, unaligned, tuples only; stops at the first error.
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$src"
PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$dst"
createdb "$src"

# --- the original CRM ------------------------------------------------------------------------------
psql -X -q -v ON_ERROR_STOP=1 -d "$src" >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, email text, industry text, employees int, country text);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, url text, occurred_at timestamptz);
CREATE INDEX ON crm.activity (lead_id);
CREATE TABLE crm.company (code text PRIMARY KEY, size int);
CREATE TABLE crm.signal (company text, kind text);

-- Model 1: behaviour and fit of people (bigint key), categories with a cap, stages, grade bands, a floor.
INSERT INTO leadscore.model (name, half_life, floor, description) VALUES ('saas', '30 days', -50, 'people');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
INSERT INTO leadscore.category (model, name, weight, cap) VALUES
	('saas', 'web', 1, 30), ('saas', 'profile', 0.5, NULL);
INSERT INTO leadscore.rule (model, name, source, condition, points, cap, category, once_per_lead) VALUES
	('saas', 'pricing page', 'crm.activity', $$type = 'page_view' AND url LIKE '%/pricing%'$$, 10, NULL, 'web', false),
	('saas', 'first visit', 'crm.activity', $$type = 'page_view'$$, 3, NULL, 'web', true),
	('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15, NULL, NULL, false),
	('saas', 'email open', 'crm.activity', $$type = 'email_open'$$, 1, 10, NULL, false),
	('saas', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 25, NULL, NULL, false),
	('saas', 'unsubscribe', 'crm.activity', $$type = 'unsubscribe'$$, -20, NULL, NULL, false),
	('saas', 'technology', 'crm.lead', $$industry = 'Technology'$$, 10, NULL, 'profile', false),
	('saas', 'mid-size', 'crm.lead', $$employees BETWEEN 100 AND 500$$, 15, NULL, 'profile', false),
	('saas', 'personal email', 'crm.lead', $$split_part(lower(email), '@', 2) IN ('gmail.com', 'yahoo.com')$$, -10, NULL, NULL, false);
INSERT INTO leadscore.rule (model, name, source, condition, points, enabled) VALUES
	('saas', 'old rule', 'crm.activity', $$type = 'fax'$$, 50, false);
INSERT INTO leadscore.stage (model, name, min_score) VALUES
	('saas', 'cold', '-Infinity'), ('saas', 'warm', 20), ('saas', 'MQL', 50);
INSERT INTO leadscore.grade_band (model, axis, name, min_score) VALUES
	('saas', 'fit', 'A', 10), ('saas', 'fit', 'B', '-Infinity'),
	('saas', 'engagement', '1', 30), ('saas', 'engagement', '2', '-Infinity');

-- Page views in a partitioned table (1.5), one partition a month, some rows written straight into one.
CREATE TABLE crm.visit (lead_id bigint, page text, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE crm.visit_2026_01 PARTITION OF crm.visit FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE crm.visit_2026_02 PARTITION OF crm.visit FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
SELECT leadscore.track_events('saas', 'crm.visit', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('saas', 'docs page', 'crm.visit', $$page LIKE '/docs%'$$, 2);

-- Model 2: accounts (text key), an event table without time column, no decay.
INSERT INTO leadscore.model (name, ceiling) VALUES ('accounts', 100);
SELECT leadscore.track_leads('accounts', 'crm.company', 'code');
SELECT leadscore.track_events('accounts', 'crm.signal', 'company');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('accounts', 'big', 'crm.company', 'size >= 100', 20),
	('accounts', 'intent', 'crm.signal', $$kind = 'intent'$$, 3);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('accounts', 'watch', 0), ('accounts', 'hot', 25);

-- The CRM's life: inserts, updates, deletes (the stage history grows).
INSERT INTO crm.lead VALUES
	(1, 'Ada Lovelace', 'ada@acme.com', 'Technology', 250, 'FR'),
	(2, 'Bob Martin', 'bob@gmail.com', 'Retail', 40, 'DE'),
	(3, 'Cy Young', 'cy@corp.io', 'Technology', 120, 'US'),
	(4, 'Dee Dee', 'dee@yahoo.com', NULL, NULL, NULL);
INSERT INTO crm.activity (lead_id, type, url, occurred_at)
	SELECT 1 + g % 4, CASE g % 5 WHEN 0 THEN 'email_open' WHEN 1 THEN 'page_view' WHEN 2 THEN 'webinar'
	                               WHEN 3 THEN 'email_open' ELSE 'page_view' END,
	       CASE WHEN g % 3 = 0 THEN 'https://x.io/pricing' ELSE 'https://x.io/blog' END,
	       timestamptz '2026-01-01 00:00+00' + g * interval '7 hours'
	  FROM generate_series(1, 120) g;
INSERT INTO crm.activity (lead_id, type, occurred_at) VALUES
	(1, 'demo_request', '2026-01-20 10:00+00'), (4, 'unsubscribe', '2026-01-22 00:00+00'),
	(9, 'webinar', '2026-01-25 00:00+00');   -- a lead not in the lead table
UPDATE crm.activity SET type = 'demo_request' WHERE lead_id = 3 AND occurred_at = (SELECT max(occurred_at) FROM crm.activity WHERE lead_id = 3);
DELETE FROM crm.activity WHERE lead_id = 2 AND type = 'webinar' AND occurred_at < '2026-01-10';
UPDATE crm.lead SET employees = 300 WHERE id = 2;
INSERT INTO crm.visit SELECT 1 + g % 3, '/docs/' || g, timestamptz '2026-01-03 00:00+00' + g * interval '11 hours'
	FROM generate_series(1, 90) g;
INSERT INTO crm.visit_2026_02 VALUES (2, '/docs/api', '2026-02-10 00:00+00'), (3, '/blog', '2026-02-11 00:00+00');
INSERT INTO crm.company VALUES ('ACME', 250), ('TINY', 3);
INSERT INTO crm.signal VALUES ('ACME', 'intent'), ('ACME', 'intent'), ('TINY', 'intent'), ('ZED', 'intent');

-- Model 3 scores the RFM segments of model 1 (it tracks leadscore.rfm_int8): restored, its recompute must
-- record no stage change (until 1.4 the segments were not dumped: one change per lead they had moved).
SELECT leadscore.refresh_rfm('saas', '90 days', NULL, '2026-02-01');
INSERT INTO leadscore.model (name) VALUES ('seg');
SELECT leadscore.track_leads('seg', 'crm.lead', 'id'), leadscore.track_events('seg', 'leadscore.rfm_int8', 'lead');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('seg', 'frequent', 'leadscore.rfm_int8', $$model = 'saas' AND f >= 3$$, 10);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('seg', 'low', '-Infinity'), ('seg', 'high', 10);
SQL

# The original's scores (float8 text output round-trips exactly), at two fixed times.
scores_sql="SELECT m.name, s.lead, t.as_of, s.score, s.fit, s.engagement, s.stage, s.grade, s.last_activity
  FROM leadscore.model m,
       (VALUES (timestamptz '2026-02-01 00:00+00'), (timestamptz '2026-03-15 12:00+00')) t (as_of),
       leadscore.scores_at(m.name, t.as_of) s"
psql -X -q -v ON_ERROR_STOP=1 -d "$src" -c "\\copy ($scores_sql) TO '$tmp/scores.tsv'"
n_scores=$(wc -l <"$tmp/scores.tsv")
config_tables="model tracked_table category rule stage grade_band"
for t in $config_tables; do
	q "$src" "SELECT r::text FROM leadscore.$t r ORDER BY 1" >"$tmp/src.$t"
done
history_sql="SELECT row(model, lead, from_stage, to_stage, score, changed_at)::text FROM leadscore.stage_changes ORDER BY 1"
q "$src" "$history_sql" >"$tmp/src.history"
triggers_sql="SELECT concat_ws(' ', tgrelid::regclass, tgname, tgenabled, pg_get_triggerdef(oid))
  FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'crm.%' ORDER BY 1"
q "$src" "$triggers_sql" >"$tmp/src.triggers"

# --- dump and restore ------------------------------------------------------------------------------
if pg_dump -Fc -d "$src" -f "$tmp/crm.dump" 2>"$tmp/dump.err"; then
	ok "pg_dump -Fc"
else
	not_ok "pg_dump -Fc" "$(cat "$tmp/dump.err")"
fi
createdb "$dst"
if pg_restore -d "$dst" "$tmp/crm.dump" 2>"$tmp/restore.err"; then
	ok "pg_restore into a fresh database, without error"
else
	not_ok "pg_restore into a fresh database, without error" "$(cat "$tmp/restore.err")"
fi
if recomputed=$(q "$dst" "SELECT string_agg(name || '=' || leadscore.recompute(name), ' ' ORDER BY name) FROM leadscore.model" 2>&1); then
	expect "SELECT leadscore.recompute(name) FROM leadscore.model" "accounts=3 saas=5 seg=5" "$recomputed"
else
	not_ok "SELECT leadscore.recompute(name) FROM leadscore.model" "$recomputed"
fi

# --- checks ----------------------------------------------------------------------------------------
for t in $config_tables; do
	q "$dst" "SELECT r::text FROM leadscore.$t r ORDER BY 1" >"$tmp/dst.$t"
	if [ -s "$tmp/src.$t" ] && diff -u "$tmp/src.$t" "$tmp/dst.$t" >"$tmp/diff.$t"; then
		ok "leadscore.$t: same rows after restore ($(wc -l <"$tmp/src.$t"))"
	else
		not_ok "leadscore.$t: same rows after restore" "$(cat "$tmp/diff.$t")"
	fi
done

q "$dst" "$triggers_sql" >"$tmp/dst.triggers"
if diff -u "$tmp/src.triggers" "$tmp/dst.triggers" >"$tmp/diff.triggers"; then
	ok "the CRM's leadscore triggers exist after restore, as in the original ($(wc -l <"$tmp/dst.triggers"))"
else
	not_ok "the CRM's leadscore triggers exist after restore, as in the original" "$(cat "$tmp/diff.triggers")"
fi
expect "each tracked table has its four triggers, enabled" "0" "$(q "$dst" "
	SELECT count(*) FROM leadscore.tracked_table t, unnest(ARRAY['leadscore_insert', 'leadscore_update',
	                                                        'leadscore_delete', 'leadscore_truncate']) n
	 WHERE NOT EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = n AND g.tgenabled = 'O')")"

psql -X -q -v ON_ERROR_STOP=1 -d "$dst" >/dev/null <<SQL
CREATE SCHEMA dumptest;
CREATE TABLE dumptest.orig (model text, lead text, as_of timestamptz, score float8, fit float8, engagement float8,
                            stage text, grade text, last_activity timestamptz);
\\copy dumptest.orig FROM '$tmp/scores.tsv'
SQL
# Rows of the original missing from the restore or different, and rows of the restore not in the original.
diff_sql="WITH restored AS ($scores_sql)
SELECT coalesce(o.model, r.name) || ' ' || coalesce(o.lead, r.lead) || ' ' || coalesce(o.as_of, r.as_of)
       || ': ' || coalesce(o.score::text, 'missing') || ' vs ' || coalesce(r.score::text, 'missing')
  FROM dumptest.orig o
  FULL JOIN restored r ON r.name = o.model AND r.lead = o.lead AND r.as_of = o.as_of
 WHERE o.model IS NULL OR r.name IS NULL
    OR abs(o.score - r.score) > 1e-9 * greatest(1, abs(o.score))
    OR abs(o.fit - r.fit) > 1e-9 * greatest(1, abs(o.fit))
    OR abs(o.engagement - r.engagement) > 1e-9 * greatest(1, abs(o.engagement))
    OR o.stage IS DISTINCT FROM r.stage OR o.grade IS DISTINCT FROM r.grade
    OR o.last_activity IS DISTINCT FROM r.last_activity
 ORDER BY 1"
mismatches=$(q "$dst" "$diff_sql")
if [ "$n_scores" -gt 0 ] && [ -z "$mismatches" ]; then
	ok "scores after restore equal the original's ($n_scores lead x time rows)"
else
	not_ok "scores after restore equal the original's ($n_scores lead x time rows)" "$mismatches"
fi

q "$dst" "$history_sql" >"$tmp/dst.history"
if [ -s "$tmp/src.history" ] && diff -u "$tmp/src.history" "$tmp/dst.history" >"$tmp/diff.history"; then
	ok "stage history (leadscore.stage_changes) equal to the original's ($(wc -l <"$tmp/src.history") rows)"
else
	not_ok "stage history (leadscore.stage_changes) equal to the original's ($(wc -l <"$tmp/src.history") rows in the original)" \
		"$(head -c 3000 "$tmp/diff.history")"
fi

# Live scoring after restore: events dated now move lead 2 (cold) past 50 points at once (one
# transaction, so that now() and the decay of its older events stay put), and the stage change is recorded.
if out=$(q "$dst" "BEGIN;
	CREATE TEMP TABLE before AS SELECT score, stage FROM leadscore.scores WHERE model = 'saas' AND lead = '2';
	INSERT INTO crm.activity (lead_id, type, occurred_at) VALUES (2, 'demo_request', now()), (2, 'webinar', now()), (2, 'demo_request', now());
	SELECT b.stage || ' -> ' || s.stage || ', +' || round((s.score - b.score)::numeric, 9)
	  FROM before b, leadscore.scores s WHERE s.model = 'saas' AND s.lead = '2';
	COMMIT;" 2>&1); then
	expect "live scoring after restore: an insert into a tracked table rescores its lead at once" \
		"cold -> MQL, +65.000000000" "$out"
	expect "live scoring after restore: the stage change is recorded" "saas 2 cold MQL" \
		"$(q "$dst" "SELECT model || ' ' || lead || ' ' || from_stage || ' ' || to_stage FROM leadscore.stage_changes
		              ORDER BY changed_at DESC, id DESC LIMIT 1")"
else
	not_ok "live scoring after restore: an insert into a tracked table" "$out"
fi
if out=$(q "$dst" "INSERT INTO crm.signal VALUES ('TINY', 'intent'); INSERT INTO crm.company VALUES ('NEW', 500);
                   SELECT string_agg(lead || '=' || score, ' ' ORDER BY lead) FROM leadscore.scores_at('accounts')
                    WHERE lead IN ('TINY', 'NEW')" 2>&1); then
	expect "live scoring after restore: text-keyed model" "NEW=20 TINY=6" "$out"
else
	not_ok "live scoring after restore: text-keyed model" "$out"
fi
q "$dst" "INSERT INTO crm.visit_2026_02 VALUES (1, '/docs/x', '2026-02-20 00:00+00')" >/dev/null
expect "live scores after restore equal a recompute (an insert straight into a partition too)" "0" "$(q "$dst" "
	BEGIN;
	CREATE TEMP TABLE live AS SELECT * FROM leadscore.scores;
	SELECT leadscore.recompute(name) FROM leadscore.model;
	SELECT count(*) FROM live l FULL JOIN leadscore.scores r USING (model, lead)
	 WHERE l.lead IS NULL OR r.lead IS NULL OR abs(l.score - r.score) > 1e-9 * greatest(1, abs(r.score))
	    OR l.stage IS DISTINCT FROM r.stage OR l.grade IS DISTINCT FROM r.grade;
	ROLLBACK;" | tail -n 1)"

# Configuration keeps working after restore: a new model (identity column leadscore.model.id).
if out=$(q "$dst" "INSERT INTO leadscore.model (name) VALUES ('after_restore') RETURNING name" 2>&1); then
	ok "a new model can be created after restore"
else
	not_ok "a new model can be created after restore" "$out"
fi

dropdb "$dst"
dropdb "$src"
report
