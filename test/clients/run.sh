#!/usr/bin/env bash
# The client examples of examples/ against a CRM: each listener (examples/python/listen_stages.py with
# psycopg 3, examples/node/listen_stages.js with node-postgres) LISTENs while this script commits two
# stage changes, and must print both: a bigint key above 2^53 exactly as it is (a string, never a rounded
# number), with the id of its row in stage_changes, and a change whose payload was cut (a 9,000-character
# text key) with the whole key read back from stage_changes. Each read_scores example must print the
# model's best leads and a lead's score at a past instant. The examples run as a role with the reader
# profile only. The node part is skipped, with one line saying so, when node or its pg module (npm
# install in examples/node) is missing.
# Run against a throwaway server: scripts/with_pg.sh bash test/clients/run.sh
# Prints ok / not ok lines and "N passed, N failed"; exits non-zero if a check failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

db=leadscore_clients
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

source test/pylib/checks.sh
# has NAME FILE TEXT: the file has a line containing TEXT.
has() { if grep -qF -- "$3" "$2"; then ok "$1"; else not_ok "$1" "no line with: $3"$'\n'"output:"$'\n'"$(cut -c1-300 "$2")"; fi; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$db"
createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
CREATE SCHEMA crm;
-- bigint keys, scored by model saas (no decay: the scores below do not move while the test runs)
CREATE TABLE crm.lead (id bigint PRIMARY KEY, name text);
CREATE TABLE crm.activity (id bigserial PRIMARY KEY, lead_id bigint, type text, occurred_at timestamptz NOT NULL DEFAULT now());
INSERT INTO leadscore.model (name) VALUES ('saas');
SELECT leadscore.track_leads('saas', 'crm.lead', 'id');
SELECT leadscore.track_events('saas', 'crm.activity', 'lead_id', 'occurred_at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('saas', 'demo request', 'crm.activity', $$type = 'demo_request'$$, 25),
	('saas', 'webinar', 'crm.activity', $$type = 'webinar'$$, 15);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('saas', 'cold', '-Infinity'), ('saas', 'MQL', 20);
INSERT INTO crm.lead VALUES (9007199254740993, 'Ada'), (9007199254740995, 'Grace'), (7, 'Alan');
INSERT INTO crm.activity (lead_id, type) VALUES (7, 'webinar');
-- text keys, scored by model long: a key too long for NOTIFY's payload
CREATE TABLE crm.contact (email text PRIMARY KEY);
CREATE TABLE crm.touch (email text, type text, at timestamptz NOT NULL DEFAULT now());
INSERT INTO leadscore.model (name) VALUES ('long');
SELECT leadscore.track_leads('long', 'crm.contact', 'email');
SELECT leadscore.track_events('long', 'crm.touch', 'email', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('long', 'call', 'crm.touch', $$type = 'call'$$, 10);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('long', 'cold', '-Infinity'), ('long', 'hot', 10);
INSERT INTO crm.contact VALUES (repeat('a', 9000)), (repeat('b', 9000));
-- the examples run as a reader (a BI tool or a CRM's back end), not as the owner
CREATE ROLE app_reader LOGIN PASSWORD 'app_reader';
SELECT leadscore.grant_profile('reader', 'app_reader');
GRANT USAGE ON SCHEMA crm TO app_reader;
GRANT SELECT ON crm.lead, crm.contact TO app_reader;
SQL

# listen NAME BIGKEY LETTER DIR COMMAND...: starts a listener (as app_reader, in DIR), waits until it
# listens, commits the two changes (lead BIGKEY of saas: cold -> MQL; the 9,000-character key made of
# LETTER of long: cold -> hot, its payload cut) and checks what the listener printed.
listen() {
	local name=$1 key=$2 letter=$3 dir=$4
	shift 4
	local out=$tmp/$name.out
	: >"$out"
	(cd "$dir" && PGUSER=app_reader PGPASSWORD=app_reader PGDATABASE=$db exec "$@" --count 2 --timeout 30) >"$out" 2>&1 &
	local pid=$!
	pids+=("$pid")
	for ((i = 0; i < 200; i++)); do
		grep -q '^listening on leadscore_stage' "$out" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	q "INSERT INTO crm.activity (lead_id, type) VALUES ($key, 'demo_request')"
	q "INSERT INTO crm.touch (email, type) VALUES (repeat('$letter', 9000), 'call')"
	local status=0
	wait "$pid" || status=$?
	if [ "$status" = 0 ]; then ok "$name: ends after the two changes"; else not_ok "$name: ends after the two changes (exit $status)" "$(cut -c1-300 "$out")"; fi
	local id
	id=$(q "SELECT id FROM leadscore.stage_changes WHERE model = 'saas' AND lead = '$key' AND to_stage = 'MQL'")
	has "$name: a bigint key above 2^53 printed exactly, with its stage_changes id" "$out" \
		"change $id: model saas, lead $key, cold -> MQL, score 25, at "
	id=$(q "SELECT id FROM leadscore.stage_changes WHERE model = 'long' AND lead = repeat('$letter', 9000) AND to_stage = 'hot'")
	has "$name: a cut payload's whole row read from stage_changes (9,000-character key)" "$out" \
		"change $id: model long, lead $(printf "%020d" 0 | tr 0 "$letter")... (9000 characters), cold -> hot, score 10, at "
	has "$name: the cut payload said so" "$out" "[payload cut: row read from stage_changes]"
}

# read NAME DIR COMMAND...: the read_scores example of a client, for model saas.
read_scores() {
	local name=$1 dir=$2
	shift 2
	local out=$tmp/$name.out
	if (cd "$dir" && PGUSER=app_reader PGPASSWORD=app_reader PGDATABASE=$db "$@" saas --top 2 --lead 9007199254740993 --as-of '2000-01-01 00:00+00') >"$out" 2>&1; then
		ok "$name: runs"
	else
		not_ok "$name: runs" "$(cat "$out")"
	fi
	local first
	first=$(sed -n 2p "$out" | tr -s ' ')
	if [ "$first" = " 9007199254740993 25.00 MQL" ] || [ "$first" = " 9007199254740995 25.00 MQL" ]; then
		ok "$name: top_leads gives a best lead first, its bigint key exact"
	else
		not_ok "$name: top_leads gives a best lead first, its bigint key exact" "$(cat "$out")"
	fi
	has "$name: top_leads gives the parameter's number of leads" "$out" "top 2 of saas:"
	has "$name: scores_at at a past instant (before its events)" "$out" \
		"lead 9007199254740993 at 2000-01-01 00:00+00: score 0.00, stage cold"
}

py=/usr/bin/python3
listen "python listen_stages.py (psycopg)" 9007199254740993 a examples/python "$py" listen_stages.py
read_scores "python read_scores.py (psycopg)" examples/python "$py" read_scores.py

if ! command -v node >/dev/null; then
	skip "node-postgres not installed (no node)"
elif ! (cd examples/node && node -e "require('pg')" >/dev/null 2>&1); then
	skip "node-postgres not installed (npm install in examples/node)"
else
	listen "node listen_stages.js (node-postgres)" 9007199254740995 b examples/node node listen_stages.js
	read_scores "node read_scores.js (node-postgres)" examples/node node read_scores.js
fi

PGOPTIONS='-c client_min_messages=warning' dropdb --if-exists "$db"
report
