#!/usr/bin/env bash
# pg_cron as a DBA sets it up: pg_cron preloaded, its metadata in the database `postgres`
# (cron.database_name), and leadscore.advance_stages() scheduled from there into the CRM's own database
# with cron.schedule_in_database(..., 'crm', 'cron_runner'), cron_runner being a role given the
# scheduler profile (not a superuser, not the extension's owner). The CRM's model lets a lead's score
# cross a stage threshold a few seconds after its event; the job (every minute: the pg_cron of Debian
# bookworm, 1.4, has no seconds schedules) must record that change at its exact instant, and
# cron.job_run_details must say the run succeeded and how many changes it recorded (its row count: the job
# returns a row per change). A second job, as a role without the profile, must fail
# with "permission denied for function advance_stages".
#
# Starts its own throwaway cluster (pg_cron needs shared_preload_libraries, and connects to localhost as
# the job's role: pg_hba.conf lets the jobs' roles in from this host, no one else without a password),
# from the system's PostgreSQL 15 (bash test/cron/pg_cron.sh) or from a private copy
# (LEADSCORE_PG_ROOT=ROOT bash test/cron/pg_cron.sh, ROOT made by scripts/private_install.sh). Skips,
# with one line saying so, when that PostgreSQL has no pg_cron (Debian package postgresql-15-cron, which
# scripts/setup.sh --tests installs).
# Takes about a minute (the job's first run is at the next minute). Prints ok / not ok lines and
# "N passed, N failed"; exits non-zero if a check failed.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../pylib/checks.sh"

# PostgreSQL 15: the system's, or with LEADSCORE_PG_ROOT the private copy of scripts/private_install.sh.
pg_config=/usr/lib/postgresql/15/bin/pg_config
[ -n "${LEADSCORE_PG_ROOT:-}" ] && pg_config=$(realpath "$LEADSCORE_PG_ROOT")$pg_config
bin=$("$pg_config" --bindir)
if [ ! -e "$("$pg_config" --pkglibdir)/pg_cron.so" ]; then
	skip "pg_cron not installed (postgresql-15-cron) in $("$pg_config" --pkglibdir)"
	report
	exit
fi

# --- a throwaway cluster with pg_cron preloaded ----------------------------------------------------
for ((i = 0; i < 200; i++)); do
	port=$((24000 + (RANDOM % 2000)))
	[ -e "/var/run/postgresql/.s.PGSQL.$port" ] && continue
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
	break
done
tmp=$(mktemp -d /tmp/leadscore-cron.XXXXXX)
if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; chown postgres: "$tmp"; else as_pg() { "$@"; }; fi
stop() { as_pg "$bin/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap stop EXIT
as_pg "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust --no-sync >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log" >&2; exit 1; }
cat >>"$tmp/data/postgresql.conf" <<CONF
port = $port
listen_addresses = 'localhost'
unix_socket_directories = '$tmp'
fsync = off
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
CONF
# As on a real server, only the job's roles get in without a password, and only from this host: pg_cron
# connects to localhost as the job's role (127.0.0.1 or ::1, which samehost both match).
cat >"$tmp/data/pg_hba.conf" <<'HBA'
local all postgres trust
host crm cron_runner samehost trust
host crm cron_nobody samehost trust
host all all all scram-sha-256
HBA
as_pg "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 120 start >/dev/null ||
	{ tail -20 "$tmp/server.log" >&2; exit 1; }
export PGHOST=$tmp PGPORT=$port PGUSER=postgres PATH=$bin:$PATH
unset PGDATABASE PGPASSWORD
# q DB SQL: one query, unaligned, tuples only; stops at the first error.
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

# --- pg_cron in its own database; the CRM in another -----------------------------------------------
createdb crm
if out=$(q crm "CREATE EXTENSION pg_cron" 2>&1); then
	not_ok "CREATE EXTENSION pg_cron outside cron.database_name is refused" "$out"
else
	case $out in *"can only create extension in database postgres"*) ok "CREATE EXTENSION pg_cron outside cron.database_name is refused" ;;
	*) not_ok "CREATE EXTENSION pg_cron outside cron.database_name is refused" "$out" ;; esac
fi
q postgres "CREATE EXTENSION pg_cron"
echo "# pg_cron $(q postgres "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")"

psql -X -q -v ON_ERROR_STOP=1 -d crm >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
CREATE ROLE cron_runner LOGIN;       -- the scheduler: neither superuser nor the extension's owner
CREATE ROLE cron_nobody LOGIN;       -- no profile
SELECT leadscore.grant_profile('scheduler', 'cron_runner');
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, occurred_at timestamptz NOT NULL);
-- A demo request is worth 20 points, halved every 4 seconds: the lead is hot (>= 10) for 4 seconds.
INSERT INTO leadscore.model (name, half_life) VALUES ('fast', '4 seconds');
SELECT leadscore.track_leads('fast', 'crm.lead', 'id');
SELECT leadscore.track_events('fast', 'crm.activity', 'lead_id', 'occurred_at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('fast', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 20);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('fast', 'cold', 0), ('fast', 'hot', 10);
INSERT INTO crm.lead VALUES (1, 'Ada'), (2, 'Bob');
SQL
t0=$(q crm "INSERT INTO crm.activity (lead_id, type, occurred_at) VALUES (1, 'demo_request', now()), (2, 'demo_request', now()) RETURNING occurred_at" | head -1)
expect "the event's transaction records the lead's stage (hot) at its time" "cold -> hot" \
	"$(q crm "SELECT coalesce(from_stage, 'cold') || ' -> ' || to_stage FROM leadscore.stage_changes WHERE lead = '1' AND changed_at = '$t0'")"

sleep 5 # the change is due (the event + 4 s) before any run: the first run must record it
# The job as the docs give it: one (empty) row per change recorded, so that the run's row count in
# cron.job_run_details is advance_stages' count.
job=$(q postgres "SELECT cron.schedule_in_database('leadscore-stages', '* * * * *', 'SELECT FROM generate_series(1, leadscore.advance_stages())', 'crm', 'cron_runner')")
bad=$(q postgres "SELECT cron.schedule_in_database('leadscore-stages-noprofile', '* * * * *', 'SELECT leadscore.advance_stages()', 'crm', 'cron_nobody')")
snap=$(q postgres "SELECT cron.schedule_in_database('leadscore-snapshot', '* * * * *', \$\$SELECT leadscore.snapshot(day => current_date - 1)\$\$, 'crm', 'cron_runner')")
expect "the jobs are pg_cron's, for the CRM's database and their roles" "crm|cron_runner;crm|cron_nobody;crm|cron_runner" \
	"$(q postgres "SELECT string_agg(database || '|' || username, ';' ORDER BY jobid) FROM cron.job WHERE jobid IN ($job, $bad, $snap)")"

# --- wait for the jobs' first run (the next minute, at most 100 s) -------------------------------
for ((i = 0; i < 100; i++)); do
	done_runs=$(q postgres "SELECT count(DISTINCT jobid) FROM cron.job_run_details WHERE jobid IN ($job, $bad, $snap) AND status IN ('succeeded', 'failed')")
	[ "$done_runs" = 3 ] && break
	sleep 1
done
echo "# runs: $(q postgres "SELECT string_agg(jobid || ' ' || status || ' ' || coalesce(return_message, ''), '; ' ORDER BY runid) FROM cron.job_run_details")"
expect "the scheduler's job ran and succeeded (cron.job_run_details)" "succeeded" \
	"$(q postgres "SELECT status FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")"
msg=$(q postgres "SELECT status || '|' || return_message FROM cron.job_run_details WHERE jobid = $bad ORDER BY runid LIMIT 1")
case $msg in failed*"permission denied for function advance_stages"*) ok "a job as a role without the scheduler profile fails: permission denied for function advance_stages" ;;
*) not_ok "a job as a role without the scheduler profile fails: permission denied for function advance_stages" "$msg" ;; esac
expect "the job recorded the change hot -> cold at its exact instant (the event + 4 s)" "hot|cold|true" \
	"$(q crm "SELECT from_stage || '|' || to_stage || '|' || (abs(extract(epoch FROM changed_at - ('$t0'::timestamptz + interval '4 seconds'))) < 0.001)::text
	            FROM leadscore.stage_changes WHERE lead = '1' AND changed_at > '$t0'")"
expect "the snapshot job ran and succeeded: yesterday's snapshot of both leads" "succeeded|2" \
	"$(q postgres "SELECT status FROM cron.job_run_details WHERE jobid = $snap ORDER BY runid LIMIT 1")|$(q crm "SELECT count(*) FROM leadscore.score_snapshot WHERE day = current_date - 1")"
expect "the run's details say how many changes it recorded (2 leads: 2 rows)" "2 rows" \
	"$(q postgres "SELECT return_message FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")"
expect "the change was recorded by the run, after the instant it happened" "t" \
	"$(q postgres "SELECT start_time > '$t0'::timestamptz + interval '4 seconds' FROM cron.job_run_details WHERE jobid = $job ORDER BY runid LIMIT 1")"

q postgres "SELECT cron.unschedule($job), cron.unschedule($bad), cron.unschedule($snap)" >/dev/null
q postgres "DELETE FROM cron.job_run_details WHERE end_time < now() - interval '7 days'"
report
