#!/usr/bin/env bash
# Random queries never crash the server: Debian's sqlsmith sends a fixed budget of random queries (every
# function, view and table it may reach, leadscore's among them, with random arguments) to a database where
# leadscore scores a CRM (two models, bigint and text keys, rules, stages, resets, RFM segments, hottest
# leads), as a role holding every leadscore profile and the CRM's tables. The run fails if any backend
# crashed: an unlogged marker table, emptied by the crash recovery that any backend's crash causes, lost
# its row (checked by killing a backend with SIGSEGV during a run). pg_postmaster_start_time() would not
# tell: it does not change on a crash restart.
# Run under scripts/with_pg.sh. Environment: FUZZ_QUERIES (default 10000), FUZZ_SEED (default 1).
# Prints ok / not ok lines and "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
queries=${FUZZ_QUERIES:-10000}
seed=${FUZZ_SEED:-1}
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; [ -n "${2:-}" ] && sed 's/^/#   /' <<<"$2" | head -20; }

if ! command -v sqlsmith >/dev/null; then
	echo "not ok - sqlsmith is not installed (scripts/setup.sh installs it)"
	echo "0 passed, 1 failed"
	exit 1
fi
db=leadscore_fuzz
dropdb --if-exists "$db" 2>/dev/null
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text, email varchar, industry text, employees int);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, amount numeric, occurred_at timestamptz NOT NULL);
CREATE INDEX ON crm.activity (lead_id);
CREATE TABLE crm.company (code text PRIMARY KEY, size int);
CREATE TABLE crm.signal (company text, kind text, at timestamptz NOT NULL DEFAULT now());
INSERT INTO leadscore.model (name, half_life, hot_index) VALUES ('saas', '30 days', true);
INSERT INTO leadscore.model (name, half_life, grace) VALUES ('accounts', '7 days', '3 days');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id'), leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
SELECT leadscore.track_leads('accounts', 'crm.company', 'code'), leadscore.track_events('accounts', 'crm.signal', 'company', 'at');
INSERT INTO leadscore.category (model, name, weight, cap) VALUES ('saas', 'web', 1, 30);
INSERT INTO leadscore.rule (model, name, source, condition, points, cap, category) VALUES
  ('saas', 'pricing', 'crm.activity', $$type = 'pricing'$$, 10, NULL, 'web'),
  ('saas', 'open', 'crm.activity', $$type = 'open'$$, 1, 10, NULL),
  ('saas', 'unsubscribe', 'crm.activity', $$type = 'unsubscribe'$$, -20, NULL, NULL),
  ('saas', 'tech', 'crm.lead', $$industry = 'Technology'$$, 10, NULL, NULL),
  ('saas', 'gmail', 'crm.lead', $$split_part(lower(email), '@', 2) = 'gmail.com'$$, -10, NULL, NULL),
  ('accounts', 'big', 'crm.company', 'size >= 100', 20, NULL, NULL),
  ('accounts', 'intent', 'crm.signal', $$kind = 'intent'$$, 3, NULL, NULL);
INSERT INTO leadscore.rule (model, name, source, condition, points, max_per_period, period) VALUES
  ('saas', 'daily visit', 'crm.activity', $$type = 'visit'$$, 2, 1, '1 day');
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'MQL', 30),
  ('accounts', 'watch', 0), ('accounts', 'hot', 25);
INSERT INTO leadscore.inactivity_rule (model, name, after, points) VALUES ('saas', 'quiet', '60 days', -5);
INSERT INTO crm.lead SELECT g, 'lead ' || g, CASE WHEN g % 3 = 0 THEN 'x@gmail.com' ELSE 'y@acme.com' END,
       CASE WHEN g % 2 = 0 THEN 'Technology' END, g * 10 FROM generate_series(1, 200) g;
INSERT INTO crm.activity (lead_id, type, amount, occurred_at)
SELECT g % 220, (ARRAY['pricing', 'open', 'visit', 'unsubscribe'])[1 + g % 4], g % 50,
       now() - (g % 90) * interval '1 day' FROM generate_series(1, 3000) g;
INSERT INTO crm.company SELECT 'C' || g, g * 7 FROM generate_series(1, 50) g;
INSERT INTO crm.signal SELECT 'C' || (g % 60), 'intent', now() - g * interval '1 hour' FROM generate_series(1, 300) g;
SELECT leadscore.reset('saas', '5', now() - interval '10 days', 'deal lost');
SELECT leadscore.refresh_rfm('saas', '90 days', 'amount');
SELECT leadscore.snapshot('saas');
CREATE ROLE fuzzer LOGIN PASSWORD 'fuzz';
GRANT USAGE ON SCHEMA crm TO fuzzer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA crm TO fuzzer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO fuzzer;
SELECT leadscore.grant_profile(p, 'fuzzer') FROM unnest(ARRAY['reader', 'admin', 'scheduler', 'analyst']) p;
CREATE UNLOGGED TABLE public.crash_marker (x int);
INSERT INTO public.crash_marker VALUES (1);
SQL

out=$(timeout 600 sqlsmith --target="host=${PGHOST:-localhost} port=${PGPORT:-5432} dbname=$db user=fuzzer password=fuzz" \
	--seed="$seed" --max-queries="$queries" --exclude-catalog --verbose 2>&1 | tail -c 20000)
code=$?
echo "# sqlsmith (seed $seed, $queries queries) ended with status $code; its last lines:"
grep -E 'queries|error' <<<"$out" | tail -n 3 | sed 's/^/#   /'

for i in 1 2 3 4 5 6 7 8 9 10; do psql -X -At -d "$db" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done
marker=$(psql -X -At -d "$db" -c "SELECT count(*) FROM public.crash_marker" 2>&1)
if [ "$marker" = 1 ]; then ok "no crash recovery during $queries random queries (the unlogged marker kept its row)"
else not_ok "the unlogged marker table lost its row: a backend crashed" "$marker"; fi
dropdb "$db"
psql -X -q -c "DROP ROLE fuzzer" 2>/dev/null
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
