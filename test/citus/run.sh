#!/usr/bin/env bash
# leadscore on a real Citus cluster (a coordinator and two workers on loopback, test/citus/cluster.sh).
# Uses the Citus installed in PostgreSQL 15, else builds it from ../shared/citus (build.sh) when that
# folder is there, else prints one line saying it skipped.
#
# What it holds (docs/operations.md#citus): the walkthrough of the README (Citus), run verbatim; the
# randomized exactness test of one server in its --citus mode; randomized writes through the coordinator
# and the workers, then by 8 concurrent writers, scored live and exactly (test/citus/exactness.py);
# recompute and time-driven stages from the coordinator, per node; every reader; what is not supported
# refused with a clear error that changes nothing; local tables of another key type scored on the
# coordinator as on one server; every other way a Citus table can reach leadscore refused.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/pylib/checks.sh

if [ -n "${LEADSCORE_PG_ROOT:-}" ]; then
	pkglibdir=$(realpath "$LEADSCORE_PG_ROOT")/usr/lib/postgresql/15/lib
else
	pkglibdir=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)
fi
if [ ! -f "$pkglibdir/citus.so" ]; then
	if [ -n "${LEADSCORE_PG_ROOT:-}" ]; then
		echo "skipped: Citus is not in the PostgreSQL copy $LEADSCORE_PG_ROOT (install it, then scripts/private_install.sh a new ROOT)"
		exit 0
	elif [ -f ../shared/citus/build.sh ]; then
		bash ../shared/citus/build.sh || { echo "not ok - building Citus from ../shared/citus"; echo "0 passed, 1 failed"; exit 1; }
	else
		echo "skipped: Citus is not installed and ../shared/citus (its source) is not here"
		exit 0
	fi
fi

if [ -z "${WORKER_PORTS:-}" ]; then
	CITUS_SPARE=1 exec test/citus/cluster.sh bash "$0" "$@"
fi

read -r worker1 _ <<<"$WORKER_PORTS"
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
# Runs SQL expected to fail: prints the error message alone (nothing if it succeeded).
fails() { psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=terse "$@" 2>&1 >/dev/null | sed -n 's/^psql:[^:]*:[0-9]*: //p; s/^ERROR:  /ERROR:  /p' | grep '^ERROR' | head -1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The walkthrough, verbatim from the docs.
sed -n '/^<!-- citus-walkthrough -->$/,/^<!-- \/citus-walkthrough -->$/p' README.md | sed '1,2d;$d' | sed '$d' >"$WORK/walkthrough.sql"
out=$(q -f "$WORK/walkthrough.sql" 2>&1)
expect "the walkthrough of the README (Citus) runs and scores both leads" "1|13.00|hot
2|3.00|cold" "$(tail -2 <<<"$out")"
expect "  ... CREATE EXTENSION created leadscore on every worker" "1.6 1.6" \
	"$(q -c "SELECT string_agg(result, ' ') FROM run_command_on_workers(\$\$SELECT extversion FROM pg_extension WHERE extname = 'leadscore'\$\$)")"
expect "  ... the tracked tables and leadscore's per-lead tables are distributed, co-located" \
	"crm.activity crm.lead leadscore.config_push leadscore.engagement_reset_int8 leadscore.stage_change_int8 leadscore.stage_notice_int8 leadscore.state_int8|1" \
	"$(q -c "SELECT string_agg(logicalrelid::text, ' ' ORDER BY logicalrelid::text) || '|' || count(DISTINCT colocationid) FILTER (WHERE partmethod = 'h') FROM pg_dist_partition")"
expect "  ... every worker has the configuration, tables named by their own OIDs" "3|true 3|true" \
	"$(q -c "SELECT string_agg(result, ' ') FROM run_command_on_workers(\$\$SELECT (SELECT count(*) FROM leadscore.rule) || '|' || bool_and(relid = 'crm.activity'::regclass OR relid = 'crm.lead'::regclass) FROM leadscore.tracked_table\$\$)")"
expect "  ... the stage changes are recorded on the lead's node (1: cold, hot; 2: cold)" "3" "$(q -c "SELECT count(*) FROM leadscore.stage_change_int8")"

# Stage changes notified: LISTEN on the coordinator, leadscore.relay_stage_changes() there.
if /usr/bin/python3 test/citus/notify.py >"$WORK/notify.log" 2>&1; then
	ok "stage changes recorded on the workers are notified on the coordinator by relay_stage_changes ($(tail -1 "$WORK/notify.log"))"
else
	not_ok "stage changes recorded on the workers are notified on the coordinator by relay_stage_changes" "$(grep -v '^ok' "$WORK/notify.log" | head -20)"
fi

# The single-server randomized exactness test (test/property/exactness.py, its generator and references) in
# --citus mode, in a database of its own (Citus made there on every node; the walkthrough distributed
# leadscore in this one): its CRM distributed by leadscore.distribute(), each batch written through the
# coordinator or a worker; after each, live = recompute = its Python reference = its SQL reference.
seed=${CITUS_SEED:-$RANDOM}
for port in "$PGPORT" $WORKER_PORTS; do
	psql -X -q -p "$port" -c "CREATE DATABASE leadscore_property" 2>/dev/null
	q -p "$port" -d leadscore_property -c "CREATE EXTENSION citus"
done
# Four shards per table there (two per worker), not Citus's 32: the same co-location and routing, with less
# of the fixed cost of a query over every shard, which the checks after each batch pay about 30 times.
q -d leadscore_property -c "ALTER DATABASE leadscore_property SET citus.shard_count = 4" \
	-c "SELECT citus_set_coordinator_host('127.0.0.1', $PGPORT)" >/dev/null
for port in $WORKER_PORTS; do q -d leadscore_property -c "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null; done
# (First, there: a tracked partitioned table is refused by distribute(), before it distributes anything.)
q -d leadscore_property >/dev/null <<'SQL'
CREATE EXTENSION leadscore;
CREATE SCHEMA part;
CREATE TABLE part.lead (id bigint PRIMARY KEY);
CREATE TABLE part.event (lead_id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE part.event_all PARTITION OF part.event DEFAULT;
INSERT INTO leadscore.model (name) VALUES ('part');
SELECT leadscore.track_leads('part', 'part.lead', 'id');
SELECT leadscore.track_events('part', 'part.event', 'lead_id', 'at');
SQL
err=$(fails -d leadscore_property -c "CALL leadscore.distribute()")
expect "distribute() with a partitioned tracked table: refused, naming it" \
	"ERROR:  leadscore.distribute: tracked table part.event is partitioned, which leadscore does not score on Citus" "$err"
expect "  ... nothing distributed" "0" "$(q -d leadscore_property -c "SELECT count(*) FROM pg_dist_partition")"
q -d leadscore_property -c "SET client_min_messages = warning" -c "DELETE FROM leadscore.model WHERE name = 'part'" -c "DROP SCHEMA part CASCADE" >/dev/null
started=$SECONDS
if PGDATABASE=leadscore_property /usr/bin/python3 test/property/exactness.py --citus --ops "${CITUS_PROPERTY_OPS:-2000}" \
	--log-dir "$WORK" "$seed" >"$WORK/property.log" 2>&1; then
	ok "the randomized exactness test of one server, on the cluster: live = recompute = references (seed $seed, $((SECONDS - started)) s: $(tail -1 "$WORK/property.log"))"
	grep -E "^seed [0-9]+: [0-9]+ operations|^  operations:" "$WORK/property.log" | sed 's/^/#   /'
else
	not_ok "the randomized exactness test of one server, on the cluster: live = recompute = references (seed $seed)" \
		"$(grep -v '^ok' "$WORK/property.log" | head -60)"
fi

# Randomized writes through all three nodes, against an independent reference, then concurrent writers.
if /usr/bin/python3 test/citus/exactness.py sales "${CITUS_OPS:-2000}" "$seed" >"$WORK/exactness.log" 2>&1; then
	ok "randomized writes through the coordinator and the workers: live = reference (seed $seed: $(tail -1 "$WORK/exactness.log"))"
	grep -E "^ok - [0-9]+ concurrent writers" "$WORK/exactness.log" | sed 's/^ok - /#   /'
else
	not_ok "randomized writes through the coordinator and the workers: live = reference (seed $seed)" "$(grep -v '^ok' "$WORK/exactness.log" | head -30)"
fi

# Configuration changes after distribute(), made on the coordinator, reach every node in their own transaction
# (exactness.py makes them among the random writes and under load). Made elsewhere, or after the transaction
# reached a node through several connections: refused, changing nothing.
compare() { /usr/bin/python3 test/citus/exactness.py sales 0 0 compare "$1" 2>&1 | grep -E '^(ok|not ok) - ' | head -1; }
points() { psql -X -At "$@" -c "SELECT points FROM leadscore.rule WHERE model = 'sales' AND name = 'visit'"; }
q -c "UPDATE leadscore.rule SET points = 3, enabled = true WHERE model = 'sales' AND name = 'visit'" \
	-c "UPDATE leadscore.model SET half_life = '30 days' WHERE name = 'sales'" >/dev/null
visit=$(points)
err=$(fails -p "$worker1" -c "UPDATE leadscore.rule SET points = 5 WHERE model = 'sales' AND name = 'visit'")
expect "a configuration change on a worker is refused, naming the coordinator" \
	"ERROR:  leadscore: the configuration is kept on the Citus coordinator: change it there" "$err"
expect "  ... and changes nothing there" "$visit" "$(points -p "$worker1")"
events=$(q -c "SELECT count(*) FROM crm.activity")
err=$(fails -c "BEGIN" -c "INSERT INTO crm.activity (lead_id, kind, at) SELECT g, 'visit', now() FROM generate_series(1, 300) g" \
	-c "UPDATE leadscore.rule SET points = points + 1 WHERE model = 'sales' AND name = 'visit'" -c "COMMIT")
expect "a configuration change after a write that reached the workers through several connections is refused" \
	"ERROR:  leadscore: a configuration change of a distributed model must come before the transaction's other statements on the cluster" "$err"
expect "  ... and changes nothing" "$visit|$events" "$(points)|$(q -c "SELECT count(*) FROM crm.activity")"
q -c "BEGIN" -c "UPDATE leadscore.rule SET points = points + 1 WHERE model = 'sales' AND name = 'visit'" \
	-c "INSERT INTO crm.activity (lead_id, kind, at) SELECT g, 'visit', now() - g * interval '1 hour' FROM generate_series(1, 300) g" \
	-c "COMMIT" >/dev/null 2>"$WORK/err"
expect "a configuration change first in a transaction, then writes: committed on every node" \
	"$((visit + 1))|$((visit + 1)) $((visit + 1))|$((events + 300))" \
	"$(points)|$(points -p "$worker1") $(points -p "${WORKER_PORTS#* }")|$(q -c "SELECT count(*) FROM crm.activity")$(cat "$WORK/err")"
out=$(compare "after a configuration change and writes in one transaction")
expect "  ... live scores = the reference under the new configuration" "ok" "${out%% -*}"
[ "${out%% -*}" = ok ] || echo "$out"

# After distribute(): a table distributed by the lead, co-located with leadscore's state, is tracked on the
# coordinator, with a rule on it: its triggers on every shard, the model rescored on every node with its rows.
q >/dev/null <<'SQL'
CREATE TABLE crm.web_visit (id bigserial, lead_id bigint NOT NULL, url text, at timestamptz NOT NULL, PRIMARY KEY (lead_id, id));
SELECT create_distributed_table('crm.web_visit', 'lead_id', colocate_with => 'leadscore.state_int8');
INSERT INTO crm.web_visit (lead_id, url, at) SELECT 1 + g % 50, '/pricing', now() - g * interval '1 hour' FROM generate_series(1, 200) g;
SQL
q -c "SELECT leadscore.track_events('sales', 'crm.web_visit', 'lead_id', 'at')" \
	-c "INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('sales', 'pricing', 'crm.web_visit', \$\$url = '/pricing'\$\$, 2)" \
	>/dev/null 2>"$WORK/err"
psql -X -q -p "$worker1" -c "INSERT INTO crm.web_visit (lead_id, url, at) SELECT 1 + g % 60, '/pricing', now() - g * interval '90 minutes' FROM generate_series(1, 100) g" 2>>"$WORK/err"
at=$(q -c "SELECT now()")
pricing() { q -c "SELECT string_agg(round(p::numeric, 6)::text, ' ' ORDER BY lead) FROM (SELECT l AS lead, (SELECT sum(weighted) FROM leadscore.explain('sales', l::text, '$at') WHERE rule = 'pricing') AS p FROM generate_series(1, 60, 7) l) x"; }
reference=$(q -c "WITH v AS MATERIALIZED (SELECT lead_id, sum(2 * power(0.5, extract(epoch FROM '$at'::timestamptz - at) / extract(epoch FROM interval '30 days'))) AS p
	FROM crm.web_visit WHERE url = '/pricing' AND at <= '$at' GROUP BY lead_id)
	SELECT string_agg(round(coalesce(v.p, 0)::numeric, 6)::text, ' ' ORDER BY l) FROM generate_series(1, 60, 7) l LEFT JOIN v ON v.lead_id = l")
expect "a co-located distributed table tracked after distribute(), with a rule: its rows scored on every node (explain = SQL)" \
	"$reference" "$(pricing)$(cat "$WORK/err")"
before=$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")
q -c "SELECT leadscore.recompute('sales')" >/dev/null
expect "  ... live scores = a recompute" "$before" "$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")"
err=$(fails -c "CREATE TABLE crm.other (lead_id bigint NOT NULL, at timestamptz NOT NULL)" -c "SELECT create_distributed_table('crm.other', 'lead_id', colocate_with => 'none')" \
	-c "SELECT leadscore.track_events('sales', 'crm.other', 'lead_id', 'at')")
expect "  ... one not co-located with leadscore's state is refused" 'ERROR:  model "sales": table crm.other is a Citus table' "$err"

# recompute from the coordinator: every worker rescores its shards at once, in its own transaction. The
# states of one shard lost on a worker (deleted straight from the shard) come back, the scores as they were,
# no stage change recorded twice.
at=$(q -c "SELECT now()")
sales() { q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')"; }
before=$(sales)
changes=$(q -c "SELECT count(*) FROM leadscore.stage_change_int8")
shard=$(psql -X -At -p "$worker1" -c "SELECT shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
	WHERE s.logicalrelid = 'leadscore.state_int8'::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group) ORDER BY 1 LIMIT 1")
lost=$(psql -X -At -p "$worker1" -c "WITH d AS (DELETE FROM $shard RETURNING 1) SELECT count(*) FROM d")
expect "  (setup) the states of one shard on a worker deleted" "t" "$([ "${lost:-0}" -gt 0 ] && [ "$(sales)" != "$before" ] && echo t || echo "f: $lost rows")"
scored=$(q -c "SELECT leadscore.recompute('sales')")
expect "recompute on the coordinator rescores every worker's shards: the scores as they were" "$before" "$(sales)"
expect "  ... it returns the leads scored on every node" "$(q -c "SELECT count(*) FROM leadscore.state_int8 WHERE model_id = (SELECT id FROM leadscore.model WHERE name = 'sales')")" "$scored"
expect "  ... and records no stage change again" "$changes" "$(q -c "SELECT count(*) FROM leadscore.stage_change_int8")"
err=$(fails -p "$worker1" -c "SELECT leadscore.recompute('sales')")
expect "recompute on a worker is refused, naming the coordinator" \
	'ERROR:  leadscore: model "sales" is distributed with Citus: recompute it on the coordinator' "$err"
q -c "CREATE ROLE citus_admin LOGIN" -c "SELECT leadscore.grant_profile('admin', 'citus_admin')" >/dev/null
expect "  ... called by a role with the admin profile (not a superuser): the same" "$scored|$before" \
	"$(q -U citus_admin -c "SELECT leadscore.recompute('sales')")|$(sales)"
err=$(fails -U citus_admin -p "$worker1" -c "SELECT leadscore._recompute_node('sales')")
expect "  ... the per-node recompute is not for that role on a worker" \
	"ERROR:  permission denied for function _recompute_node" "$err"
err=$(fails -c "SELECT leadscore._recompute_node('sales')")
expect "the per-node recompute on the coordinator (which holds no shard) does nothing wrong" "" "$err"

# Time-driven stages from the coordinator: every worker records the changes due in its shards, each once,
# at the coordinator's instant; then each lead's latest recorded stage is its stage at that instant. (Latest
# by id: a lead's changes take their ids from the sequence of the node that holds it, in the order they are
# recorded; changed_at is each change's transaction time, which a transaction that waited for the lead can
# give earlier than the one before it.)
later=$(q -c "SELECT now() + interval '90 days'")
model_id=$(q -c "SELECT id FROM leadscore.model WHERE name = 'sales'")
recorded=$(q -c "SELECT leadscore.advance_stages('$later')")
expect "advance_stages on the coordinator records the stage changes time caused on every worker" "t" \
	"$([ "${recorded:-0}" -gt 0 ] && echo t || echo "f: $recorded")"
expect "  ... each once (run again: none)" "0" "$(q -c "SELECT leadscore.advance_stages('$later')")"
mismatch=$(q -c "WITH s AS MATERIALIZED (SELECT lead::bigint AS lead, stage FROM leadscore.scores_at('sales', '$later')),
	              h AS (SELECT DISTINCT ON (lead) lead, to_stage FROM leadscore.stage_change_int8 WHERE model_id = $model_id
	                     ORDER BY lead, id DESC)
	         SELECT string_agg(s.lead::text, ' ') FROM s LEFT JOIN h USING (lead) WHERE s.stage IS DISTINCT FROM h.to_stage")
detail=""
for lead in $mismatch; do
	detail+=$(q -c "SELECT 'lead $lead (seed $seed): now ' || (SELECT score || ' ' || coalesce(stage, '-') FROM leadscore.scores_at('sales', now()) WHERE lead = '$lead')
	                || ', at $later ' || (SELECT score || ' ' || coalesce(stage, '-') FROM leadscore.scores_at('sales', '$later') WHERE lead = '$lead')" \
	              -c "SELECT 'state: stage ' || coalesce(stage, '-') || ', next_change ' || coalesce(next_change::text, '-') FROM leadscore.state_int8 WHERE lead = $lead AND model_id = $model_id" \
	              -c "SELECT 'history: ' || string_agg(id || ' ' || coalesce(from_stage, '-') || '>' || coalesce(to_stage, '-') || ' at ' || changed_at, '; ' ORDER BY changed_at, id) FROM leadscore.stage_change_int8 WHERE lead = $lead AND model_id = $model_id" \
	              -c "SELECT 'events: ' || string_agg(kind || ' ' || at, '; ' ORDER BY at) FROM crm.activity WHERE lead_id = $lead" \
	              -c "SELECT 'title: ' || coalesce(title, '-') FROM crm.lead WHERE id = $lead")$'\n'
done
label="  ... every lead's latest recorded stage is its stage at that instant (none recorded: no stage)"
if [ -z "$mismatch" ]; then ok "$label"; else not_ok "$label" "leads $mismatch"$'\n'"$detail"; fi
even_later=$(q -c "SELECT now() + interval '400 days'")
on_worker=$(psql -X -At -p "$worker1" -c "SELECT leadscore.advance_stages('$even_later')")
expect "advance_stages on a worker (pg_cron per node) records the changes due in that worker's shards alone" "t|0" \
	"$([ "${on_worker:-0}" -ge 0 ] && echo t)|$(psql -X -At -p "$worker1" -c "SELECT leadscore.advance_stages('$even_later')")"
# The readers on a distributed model: top_leads and stage_leads read every node (one query Citus sends to the
# shards, each scoring its leads); explain runs on the node that holds the lead (a query routed by its key).
at=$(q -c "SELECT now()")
best() { q -c "SELECT string_agg(lead || ' ' || round(score::numeric, 6), ',' ORDER BY score DESC, lead::bigint)
	FROM (SELECT * FROM leadscore.scores_at('sales', '$at') $1 ORDER BY score DESC, lead::bigint $2) x"; }
expect "top_leads on the coordinator: the 10 best leads of scores_at, in order" "$(best "" "LIMIT 10")" \
	"$(q -c "SELECT string_agg(lead || ' ' || round(score::numeric, 6), ',' ORDER BY o) FROM leadscore.top_leads('sales', 10, '$at') WITH ORDINALITY t(lead, score, fit, engagement, stage, grade, last_activity, o)")"
expect "  ... the same on a worker" "$(best "" "LIMIT 10")" \
	"$(psql -X -At -p "$worker1" -c "SELECT string_agg(lead || ' ' || round(score::numeric, 6), ',' ORDER BY o) FROM leadscore.top_leads('sales', 10, '$at') WITH ORDINALITY t(lead, score, fit, engagement, stage, grade, last_activity, o)")"
expect "stage_leads on the coordinator: every lead scores_at puts in the stage, best first" "$(best "WHERE stage = 'hot'" "")" \
	"$(q -c "SELECT string_agg(lead || ' ' || round(score::numeric, 6), ',' ORDER BY o) FROM leadscore.stage_leads('sales', 'hot', '$at') WITH ORDINALITY t(lead, score, fit, engagement, grade, last_activity, o)")"
explained=""
expected=""
for lead in 1 2 3 5 8 13 21 34; do
	for port in "$PGPORT" $WORKER_PORTS; do
		explained+="$(psql -X -At -p "$port" -c "SELECT round(sum(weighted)::numeric, 6) FROM leadscore.explain('sales', '$lead', '$at')") "
		expected+="$(q -c "SELECT round(score::numeric, 6) FROM leadscore.scores_at('sales', '$at') WHERE lead = '$lead'") "
	done
done
expect "explain of a lead, on any node: its lines sum to its score (8 leads x 3 nodes)" "$expected" "$explained"
# (The views score at now(), which each worker evaluates at its own transaction's start, milliseconds after
# the coordinator's: the same leads and stages, the scores within 1e-6.)
views=$(q -c "WITH v AS MATERIALIZED (SELECT count(*) AS n, sum(score) AS s, count(stage_rank) AS r FROM leadscore.scores_int8 WHERE model = 'sales'),
	               a AS MATERIALIZED (SELECT count(*) AS n, sum(score) AS s, count(stage) AS r FROM leadscore.scores_at('sales'))
	          SELECT CASE WHEN v.n = a.n AND v.r = a.r AND abs(v.s - a.s) <= 1e-6 * abs(a.s) THEN 'same' ELSE v::text || ' ' || a::text END FROM v, a" 2>&1)
expect "the score views on the coordinator: the leads, scores and ranked stages of scores_at" "same" "$views"
expect "the stage history views on the coordinator: every recorded change" \
	"$(q -c "SELECT count(*) FROM leadscore.stage_change_int8")|$(q -c "SELECT count(*) FROM leadscore.stage_change_int8")" \
	"$(q -c "SELECT count(*) FROM leadscore.stage_changes WHERE model = 'sales'")|$(q -c "SELECT count(*) FROM leadscore.stage_changes_int8 WHERE to_rank IS NOT NULL OR to_stage IS NULL")"
# Snapshots and RFM segments on the coordinator: computed from every node into their tables there.
taken=$(q -c "SELECT leadscore.snapshot('sales')")
expect "snapshot on the coordinator: every lead of scores_at, at the snapshot's instant" "same" \
	"$(q -c "WITH s AS MATERIALIZED (SELECT count(*) AS n, sum(score) AS sc, max(taken_at) AS t FROM leadscore.score_snapshot WHERE model = 'sales' AND day = current_date),
	              a AS MATERIALIZED (SELECT count(*) AS n, sum(score) AS sc FROM leadscore.scores_at('sales', (SELECT t FROM s)))
	         SELECT CASE WHEN s.n = a.n AND s.n = $taken AND abs(s.sc - a.sc) <= 1e-9 * abs(a.sc) THEN 'same' ELSE s::text || ' ' || a::text END FROM s, a")"
rfm_at=$(q -c "SELECT now()")
q -c "SELECT leadscore.refresh_rfm('sales', '30 days', NULL, '$rfm_at')" >/dev/null
expect "refresh_rfm on the coordinator: each lead's events of the period (both event tables) counted from every node" \
	"$(q -c "SELECT (SELECT count(*) FROM crm.activity WHERE at > '$rfm_at'::timestamptz - interval '30 days' AND at <= '$rfm_at')
	              + (SELECT count(*) FROM crm.web_visit WHERE at > '$rfm_at'::timestamptz - interval '30 days' AND at <= '$rfm_at')")" \
	"$(q -c "SELECT sum(frequency) FROM leadscore.rfm_int8 WHERE model = 'sales'")"
# An engagement reset of a lead on the coordinator: its row goes to the lead's node (engagement_reset_<key>
# is distributed with the state), whose trigger rebuilds the lead's state there: the events before it count
# no more, a visit after it does.
q -c "SELECT leadscore.reset('sales', '2', now(), 'deal lost')" >/dev/null
expect "reset of a lead on the coordinator: no engagement left, its row on the lead's node" "0.000000|1" \
	"$(q -c "SELECT round(engagement::numeric, 6) FROM leadscore.scores_at('sales') WHERE lead = '2'")|$(q -c "SELECT count(*) FROM leadscore.engagement_resets_int8 WHERE lead = 2 AND reason = 'deal lost'")"
psql -X -q -p "$worker1" -c "INSERT INTO crm.activity (lead_id, kind, at) VALUES (2, 'visit', now())"
expect "  ... a visit after it counts (through a worker)" \
	"$(q -c "SELECT round(points::numeric, 6) FROM leadscore.rule WHERE model = 'sales' AND name = 'visit' AND enabled")" \
	"$(q -c "SELECT round(engagement::numeric, 6) FROM leadscore.scores_at('sales') WHERE lead = '2'")"
at=$(q -c "SELECT now()")
before=$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")
q -c "SELECT leadscore.recompute('sales')" >/dev/null
expect "  ... live scores = a recompute" "$before" "$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")"
err=$(fails -c "SELECT * FROM leadscore.explain('sales', '999999')")
expect "  ... a lead the model has not seen: an error naming it" 'ERROR:  model "sales" has no lead 999999' "$err"
err=$(fails -c "TRUNCATE crm.activity")
rows=$(q -c "SELECT count(*) FROM crm.activity")
case $err in
*"TRUNCATE of the distributed table activity is not supported"* | *"state table leadscore.state_int8 is a Citus table"*)
	ok "TRUNCATE of a distributed tracked table is refused" ;;
*) not_ok "TRUNCATE of a distributed tracked table is refused" "$err" ;;
esac
expect "  ... and its rows stay" "t" "$([ "$rows" -gt 0 ] && echo t || echo "f: $rows rows")"
resets=$(q -c "SELECT count(*) FROM leadscore.engagement_reset_int8")
err=$(fails -c "TRUNCATE leadscore.engagement_reset_int8")
expect "TRUNCATE of the distributed engagement resets is refused, and they stay" "t|$resets" \
	"$([ -n "$err" ] && echo t || echo "f: succeeded")|$(q -c "SELECT count(*) FROM leadscore.engagement_reset_int8")"
err=$(fails -c "UPDATE crm.activity SET lead_id = lead_id + 1 WHERE lead_id = 1")
expect "a lead key change is refused by Citus" "t" "$([ -n "$err" ] && echo t || echo f)"

# A hostile rule editor (the admin profile, not a superuser): the workers run a condition as its author,
# as one server does. A condition calling the editor's own function (declared immutable) that reads a
# table the editor may not read is refused when written (the rescoring on the workers fails as the
# author), and changes nothing; a condition within the editor's rights is scored on every node.
q >/dev/null <<'SQL'
CREATE ROLE citus_editor LOGIN;
SELECT leadscore.grant_profile('admin', 'citus_editor');
GRANT USAGE ON SCHEMA crm TO citus_editor;
GRANT SELECT ON crm.lead TO citus_editor;
CREATE SCHEMA ed AUTHORIZATION citus_editor;
CREATE TABLE public.secret (x int);
SELECT create_reference_table('public.secret');
INSERT INTO public.secret VALUES (1);
SQL
q -U citus_editor -c "CREATE FUNCTION ed.peek(t text) RETURNS boolean LANGUAGE sql IMMUTABLE AS \$\$SELECT EXISTS (SELECT FROM public.secret)\$\$" >/dev/null
rules=$(q -c "SELECT count(*) FROM leadscore.rule")
err=$(fails -U citus_editor -c "INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('sales', 'peek', 'crm.lead', 'ed.peek(title)', 1)")
case $err in
*"permission denied for table secret"*) ok "a rule editor's condition reading a table the editor may not read: refused when written" ;;
*) not_ok "a rule editor's condition reading a table the editor may not read: refused when written" "$err" ;;
esac
expect "  ... nothing changed, on any node" "$rules|$rules $rules" \
	"$(q -c "SELECT count(*) FROM leadscore.rule")|$(q -c "SELECT string_agg(result, ' ') FROM run_command_on_workers(\$\$SELECT count(*) FROM leadscore.rule\$\$)")"
at=$(q -c "SELECT now()")
total() { q -c "SELECT round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')"; }
before=$(total)
q -U citus_editor -c "INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('sales', 'cto', 'crm.lead', \$\$title = 'CTO'\$\$, 2)" >/dev/null 2>"$WORK/err"
expect "  ... a condition within the editor's rights: scored on every node (2 points per CTO)" \
	"$(q -c "SELECT $before + 2 * count(*) FROM crm.lead WHERE title = 'CTO'")" "$(total)$(cat "$WORK/err")"
q -c "DELETE FROM leadscore.rule WHERE model = 'sales' AND name = 'cto'" >/dev/null

# Training from a query over the distributed tables (a join co-located by the lead, grouped by it): the same
# model as from the same rows in a local table of the coordinator.
history="SELECT l.title, count(a.id) FILTER (WHERE a.kind = 'visit') AS visits, l.id % 3 = 0 AS converted
	FROM crm.lead l LEFT JOIN crm.activity a ON a.lead_id = l.id GROUP BY l.id, l.title"
fit() { q -c "SELECT rows || ' ' || positives || ' ' || round(auc::numeric, 9) || ' ' || round(log_loss::numeric, 9) FROM leadscore.train('$1', \$\$$2\$\$)"; }
trained=$(fit from_cluster "$history")
q -c "CREATE TABLE public.lead_history AS $history" >/dev/null
expect "train from a query over the distributed tables: the model of the same rows in a local table" \
	"$(fit from_local "SELECT title, visits, converted FROM public.lead_history")" "$trained"
expect "  ... its terms and coefficients too" "0" "$(q -c "SELECT count(*) FROM
	(SELECT * FROM leadscore.predictive_term WHERE model = 'from_local') l FULL JOIN
	(SELECT * FROM leadscore.predictive_term WHERE model = 'from_cluster') c USING (ord)
	WHERE (l.feature, l.term, l.level) IS DISTINCT FROM (c.feature, c.term, c.level)
	   OR NOT abs(l.coefficient - c.coefficient) <= 1e-9 * greatest(1, abs(l.coefficient))")"
q -c "DROP TABLE public.lead_history" >/dev/null
# A rule that uses a trained model (points x its probability for the lead row): pushed to every worker with
# the trained model; each lead's points, in explain on the node that holds it, are those of predict() on the
# coordinator. Retrained (a new version): the model rescored on every node at commit.
predicted() { q -c "SELECT string_agg(round(100 * leadscore.predict('title_model', l)::numeric, 9)::text, ' ' ORDER BY l.id)
	FROM (SELECT * FROM crm.lead ORDER BY id LIMIT 12) l"; }
explained() { for lead in $(q -c "SELECT id FROM crm.lead ORDER BY id LIMIT 12"); do
	psql -X -At -p "$(shuf -n1 -e "$PGPORT" $WORKER_PORTS)" -c "SELECT round(raw::numeric, 9) FROM leadscore.explain('sales', '$lead') WHERE rule = 'likely'"
	done | paste -sd' '; }
q -c "SELECT leadscore.train('title_model', \$\$SELECT title, id % 3 = 0 AS converted FROM crm.lead\$\$)" \
	-c "INSERT INTO leadscore.rule (model, name, source, condition, points, predictor) VALUES ('sales', 'likely', 'crm.lead', 'true', 100, 'title_model')" \
	>/dev/null 2>"$WORK/err"
expect "a rule using a trained model: each lead's points on its node = predict() on the coordinator" "$(predicted)" "$(explained)$(cat "$WORK/err")"
q -c "SELECT leadscore.train('title_model', \$\$SELECT title, id % 2 = 0 AS converted FROM crm.lead\$\$)" >/dev/null 2>"$WORK/err"
expect "  ... retrained: every node rescored with the new version" "$(predicted)" "$(explained)$(cat "$WORK/err")"
at=$(q -c "SELECT now()")
before=$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")
q -c "SELECT leadscore.recompute('sales')" >/dev/null
expect "  ... live scores = a recompute" "$before" "$(q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')")"
q -c "DELETE FROM leadscore.rule WHERE model = 'sales' AND name = 'likely'" >/dev/null

# A worker added to the cluster (citus_add_node, then Citus's replicate_reference_tables): it has
# leadscore (Citus creates the extension there) but not the configuration. Writes to a shard group moved
# onto it (the CRM's shards with leadscore's co-located ones), and reads of its leads, are refused until
# CALL leadscore.distribute() again copies the configuration there; then its leads are scored there,
# exactly, and time-driven stages and recompute reach it.
if [ -n "${SPARE_PORT:-}" ]; then
	q -c "SELECT citus_add_node('127.0.0.1', $SPARE_PORT)" -c "SELECT replicate_reference_tables('block_writes')" >/dev/null
	expect "a worker added: leadscore there, no configuration yet" "1.6|0" \
		"$(psql -X -At -p "$SPARE_PORT" -c "SELECT extversion FROM pg_extension WHERE extname = 'leadscore'")|$(psql -X -At -p "$SPARE_PORT" -c "SELECT count(*) FROM leadscore.rule")"
	at=$(q -c "SELECT now()")
	sales() { q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('sales', '$at')"; }
	before=$(sales)
	shard=$(q -c "SELECT get_shard_id_for_distribution_column('crm.activity', 7)")
	from=$(q -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shard")
	q -c "SELECT citus_move_shard_placement($shard, '127.0.0.1', $from, '127.0.0.1', $SPARE_PORT, shard_transfer_mode => 'block_writes')" >/dev/null 2>"$WORK/err"
	expect "  ... a shard group moved onto it (lead 7's): the state with the CRM's rows" "$SPARE_PORT|$SPARE_PORT" \
		"$(q -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shard")|$(q -c "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = get_shard_id_for_distribution_column('leadscore.state_int8', 7)")$(cat "$WORK/err")"
	err=$(fails -c "SELECT count(*) FROM leadscore.scores_at('sales', '$at')")
	case $err in
	*"this Citus node has no leadscore configuration yet"*) ok "  ... before the configuration reaches it: reads of its leads are refused (not left out)" ;;
	*) not_ok "  ... before the configuration reaches it: reads of its leads are refused (not left out)" "$err" ;;
	esac
	err=$(fails -c "INSERT INTO crm.activity (lead_id, kind, at) VALUES (7, 'visit', now())")
	case $err in
	*"cannot be scored"*) ok "  ... and writes to them" ;;
	*) not_ok "  ... and writes to them" "$err" ;;
	esac
	q -c "CALL leadscore.distribute()" 2>"$WORK/err"
	expect "  ... CALL leadscore.distribute() again copies the configuration to it" \
		"$(q -c "SELECT count(*) FROM leadscore.rule")|$(q -c "SELECT string_agg(relid::text, ' ' ORDER BY relid::text) FROM leadscore.tracked_table")" \
		"$(psql -X -At -p "$SPARE_PORT" -c "SELECT count(*) FROM leadscore.rule")|$(psql -X -At -p "$SPARE_PORT" -c "SELECT string_agg(relid::text, ' ' ORDER BY relid::text) FROM leadscore.tracked_table")$(cat "$WORK/err")"
	expect "  ... then the scores are as they were" "$before" "$(sales)"
	visit=$(q -c "SELECT points FROM leadscore.rule WHERE model = 'sales' AND name = 'visit' AND enabled")
	score7() { q -c "SELECT round(score::numeric, 6) FROM leadscore.scores_at('sales', '$1') WHERE lead = '7'"; }
	at=$(q -c "SELECT now() + interval '1 minute'")
	was=$(score7 "$at")
	q -c "INSERT INTO crm.activity (lead_id, kind, at) VALUES (7, 'visit', '$at')" >/dev/null
	psql -X -q -p "$SPARE_PORT" -c "INSERT INTO crm.activity (lead_id, kind, at) VALUES (7, 'visit', '$at')"
	expect "  ... writes to it, through the coordinator and the new worker, scored there (lead 7: two visits)" \
		"$(q -c "SELECT round(($was + 2 * coalesce(${visit:-NULL}, 0))::numeric, 6)")" "$(score7 "$at")"
	later=$(q -c "SELECT now() + interval '2 years'")
	q -c "SELECT leadscore.advance_stages('$later')" >/dev/null
	expect "  ... advance_stages from the coordinator reaches it (lead 7's latest stage change is its stage then)" \
		"$(q -c "SELECT coalesce(stage, '-') FROM leadscore.scores_at('sales', '$later') WHERE lead = '7'")" \
		"$(q -c "SELECT coalesce(to_stage, '-') FROM leadscore.stage_change_int8 WHERE lead = 7 AND model_id = (SELECT id FROM leadscore.model WHERE name = 'sales') ORDER BY id DESC LIMIT 1")"
	at=$(q -c "SELECT now()")
	before=$(sales)
	q -c "SELECT leadscore.recompute('sales')" >/dev/null
	expect "  ... live scores = a recompute on every node, the new one too" "$before" "$(sales)"
else
	not_ok "a worker added to the cluster (no spare node: test/citus/cluster.sh with CITUS_SPARE=1)"
fi

# Stage hysteresis on the cluster (a model whose exits a margin holds back): its readers on every node move
# each lead's stored stage on through time before any run, and read the recorded history after one; both
# give the same stages, and stage_leads and explain see the held leads.
q >/dev/null <<'SQL'
INSERT INTO leadscore.model (name, half_life, stage_exit_margin) VALUES ('held', '30 days', 5);
SELECT leadscore.track_leads('held', 'crm.lead', 'id');
SELECT leadscore.track_events('held', 'crm.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('held', 'vp', 'crm.lead', $$title = 'VP'$$, 10),
	('held', 'visit', 'crm.activity', $$kind = 'visit'$$, 3);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('held', 'cold', 0), ('held', 'hot', 12);
-- The same with a minimum time in stage instead of the margin.
INSERT INTO leadscore.model (name, half_life, stage_min_time) VALUES ('minheld', '30 days', '10 days');
SELECT leadscore.track_leads('minheld', 'crm.lead', 'id');
SELECT leadscore.track_events('minheld', 'crm.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points)
SELECT 'minheld', name, source, condition, points FROM leadscore.rule WHERE model = 'held';
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('minheld', 'cold', 0), ('minheld', 'hot', 12);
SQL
t1=$(q -c "SELECT now() + interval '20 days'")
t2=$(q -c "SELECT now() + interval '60 days'")
stages() { q -c "SELECT string_agg(lead || ' ' || coalesce(stage, '-'), ',' ORDER BY lead::bigint) FROM leadscore.scores_at('${2:-held}', '$1')"; }
s1=$(stages "$t1")
s2=$(stages "$t2")
m1=$(stages "$t1" minheld)
m2=$(stages "$t2" minheld)
held=$(q -c "SELECT string_agg(lead, ' ' ORDER BY lead::bigint) FROM leadscore.scores_at('held', '$t1') WHERE stage = 'hot' AND score < 12")
expect "stage hysteresis on the cluster: leads held in a stage their score no longer reaches (read before any run)" "t" \
	"$([ -n "$held" ] && echo t || echo "f: none held")"
expect "  ... stage_leads on the coordinator finds them" \
	"$(q -c "SELECT string_agg(lead, ' ' ORDER BY lead::bigint) FROM leadscore.scores_at('held', '$t1') WHERE stage = 'hot'")" \
	"$(q -c "SELECT string_agg(lead, ' ' ORDER BY lead::bigint) FROM leadscore.stage_leads('held', 'hot', '$t1')")"
expect "  ... explain of one, on a worker, says its stage is held" "(stage held: hot)" \
	"$(psql -X -At -p "$worker1" -c "SELECT rule FROM leadscore.explain('held', '${held%% *}', '$t1') WHERE kind = 'stage'")"
q -c "SELECT leadscore.advance_stages('$t2')" >/dev/null
expect "  ... a run records the exits; the stages read after it (from the history) are those read before" "$s1|$s2" \
	"$(stages "$t1")|$(stages "$t2")"
mismatch=$(q -c "WITH s AS MATERIALIZED (SELECT lead::bigint AS lead, stage FROM leadscore.scores_at('held', '$t2')),
	              h AS (SELECT DISTINCT ON (lead) lead, to_stage FROM leadscore.stage_change_int8
	                     WHERE model_id = (SELECT id FROM leadscore.model WHERE name = 'held') ORDER BY lead, id DESC)
	         SELECT string_agg(s.lead::text, ' ') FROM s LEFT JOIN h USING (lead) WHERE s.stage IS DISTINCT FROM h.to_stage")
expect "  ... every lead's latest recorded stage is its stage then" "" "$mismatch"
expect "  ... a minimum time in stage: the stages read after the run are those read before" "$m1|$m2" \
	"$(stages "$t1" minheld)|$(stages "$t2" minheld)"
expect "  ... and no lead left hot less than 10 days after entering it (some left after exactly 10)" "0|true" \
	"$(q -c "WITH c AS (SELECT lead, from_stage, to_stage, changed_at - lag(changed_at) OVER (PARTITION BY lead ORDER BY id) AS stayed
	                     FROM leadscore.stage_changes WHERE model = 'minheld')
	         SELECT count(*) FILTER (WHERE stayed < interval '10 days') || '|' || bool_or(stayed = interval '10 days')
	           FROM c WHERE from_stage = 'hot' AND to_stage = 'cold'")"
# (Their history goes too: the checks below read each lead's latest change by id.)
for name in held minheld; do
	model_id=$(q -c "SELECT id FROM leadscore.model WHERE name = '$name'")
	q -c "DELETE FROM leadscore.model WHERE name = '$name'" -c "DELETE FROM leadscore.stage_change_int8 WHERE model_id = $model_id" >/dev/null
done

# Local tables of another key type (integer), scored on the coordinator as on one server.
q >/dev/null <<'SQL'
CREATE SCHEMA loc;
CREATE TABLE loc.lead (id integer PRIMARY KEY, title text);
CREATE TABLE loc.activity (id bigserial, lead_id integer NOT NULL, kind text, at timestamptz NOT NULL, PRIMARY KEY (lead_id, id));
INSERT INTO leadscore.model (name, half_life) VALUES ('local', '30 days');
SELECT leadscore.track_leads('local', 'loc.lead', 'id');
SELECT leadscore.track_events('local', 'loc.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('local', 'vp', 'loc.lead', $$title = 'VP'$$, 10),
	('local', 'visit', 'loc.activity', $$kind = 'visit'$$, 3),
	('local', 'unsubscribe', 'loc.activity', $$kind = 'unsubscribe'$$, -8);
INSERT INTO leadscore.stage VALUES ('local', 'cold', 0), ('local', 'hot', 12);
INSERT INTO loc.lead SELECT g, CASE WHEN g % 3 = 0 THEN 'VP' END FROM generate_series(1, 200) g;
INSERT INTO loc.activity (lead_id, kind, at)
	SELECT 1 + g % 200, CASE WHEN g % 7 = 0 THEN 'unsubscribe' ELSE 'visit' END, now() - (g || ' hours')::interval
	FROM generate_series(1, 2000) g;
UPDATE loc.activity SET kind = 'visit' WHERE id % 11 = 0;
DELETE FROM loc.activity WHERE id % 13 = 0;
UPDATE loc.lead SET title = 'VP' WHERE id % 5 = 0;
SQL
# Scores read at one instant: the sum of every lead's score, rounded to 1e-6.
at=$(q -c "SELECT now()")
scores() { q -c "SELECT count(*) || ' ' || round(sum(score)::numeric, 6) FROM leadscore.scores_at('local', '$at')"; }
live=$(scores)
q -c "SELECT leadscore.recompute('local')" >/dev/null
again=$(scores)
reference=$(q <<SQL
SELECT count(*) || ' ' || round(sum(s)::numeric, 6) FROM (
	SELECT l.id, (CASE WHEN l.title = 'VP' THEN 10 ELSE 0 END) + coalesce((
		SELECT sum(CASE a.kind WHEN 'visit' THEN 3 WHEN 'unsubscribe' THEN -8 END
		           * power(0.5, extract(epoch FROM '$at'::timestamptz - a.at) / extract(epoch FROM interval '30 days')))
		FROM loc.activity a WHERE a.lead_id = l.id), 0) AS s
	FROM loc.lead l) r
SQL
)
expect "local tables on a Citus coordinator: live scores equal a recompute" "$live" "$again"
expect "local tables on a Citus coordinator: live scores equal an independent SQL reference" "$reference" "$live"
expect "local tables on a Citus coordinator: stage changes recorded" "t" \
	"$(q -c "SELECT count(*) > 0 FROM leadscore.stage_change_int4 WHERE to_stage = 'hot'")"

# Local tables of the distributed key type (bigint): their leads' states would be on the workers, which the
# coordinator's trigger cannot write: refused at tracking, naming the way (distribute the table first).
q >/dev/null <<'SQL'
CREATE TABLE loc.big_lead (id bigint PRIMARY KEY, title text);
INSERT INTO leadscore.model (name) VALUES ('local8');
SQL
err=$(fails -c "SELECT leadscore.track_leads('local8', 'loc.big_lead', 'id')")
expect "tracking a local table of the key type whose state is distributed is refused, naming it" \
	'ERROR:  model "local8": table loc.big_lead is a local table, but the state of bigint lead keys is distributed with Citus' "$err"
expect "  ... nothing tracked, writes to it go on unscored" "0|1" \
	"$(q -c "SELECT count(*) FROM leadscore.tracked_table WHERE model = 'local8'")|$(q -c "INSERT INTO loc.big_lead VALUES (1, 'VP')" -c "SELECT count(*) FROM loc.big_lead")"
q -c "SET client_min_messages = warning" -c "SELECT create_distributed_table('loc.big_lead', 'id', colocate_with => 'leadscore.state_int8')" \
	-c "SELECT leadscore.track_leads('local8', 'loc.big_lead', 'id')" \
	-c "INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('local8', 'vp', 'loc.big_lead', \$\$title = 'VP'\$\$, 4)" \
	-c "INSERT INTO loc.big_lead SELECT g, 'VP' FROM generate_series(2, 40) g" >/dev/null 2>"$WORK/err"
expect "  ... distributed as the hint says, co-located with the state: tracked and scored on the workers" "40|160.00" \
	"$(q -c "SELECT count(*) || '|' || sum(score)::numeric(10,2) FROM leadscore.scores_at('local8')")$(cat "$WORK/err")"

# A partitioned table distributed co-located with the state, tracked after distribute(): refused.
err=$(fails -c "CREATE TABLE crm.web_part (lead_id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at)" \
	-c "CREATE TABLE crm.web_part_all PARTITION OF crm.web_part DEFAULT" \
	-c "SELECT create_distributed_table('crm.web_part', 'lead_id', colocate_with => 'leadscore.state_int8')" \
	-c "SELECT leadscore.track_events('local8', 'crm.web_part', 'lead_id', 'at')")
expect "tracking a distributed partitioned table is refused, naming it" \
	'ERROR:  model "local8": table crm.web_part is a partitioned Citus table, which leadscore does not score' "$err"

# Tracking a distributed table: refused at track_events, nothing recorded.
q >/dev/null <<'SQL'
CREATE TABLE loc.web_visit (id bigserial, lead_id integer NOT NULL, url text, at timestamptz NOT NULL, PRIMARY KEY (lead_id, id));
SELECT create_distributed_table('loc.web_visit', 'lead_id');
SQL
err=$(fails -c "SELECT leadscore.track_events('local', 'loc.web_visit', 'lead_id', 'at')")
expect "tracking a distributed table is refused, naming it" \
	'ERROR:  model "local": table loc.web_visit is a Citus table' "$err"
expect "  ... and nothing is tracked" "2" "$(q -c "SELECT count(*) FROM leadscore.tracked_table WHERE model = 'local'")"
q -c "CREATE TABLE loc.ref (id integer PRIMARY KEY)" -c "SELECT create_reference_table('loc.ref')" \
	-c "INSERT INTO leadscore.model (name) VALUES ('local2')" >/dev/null
err=$(fails -c "SELECT leadscore.track_leads('local2', 'loc.ref', 'id')")
expect "tracking a reference table is refused" 'ERROR:  model "local2": table loc.ref is a Citus table' "$err"

# Distributing a tracked table: Citus refuses its triggers unless told; told, the rows it copies onto the
# shards fire leadscore's trigger there, which refuses; the table stays local, the scores as they were.
err=$(fails -c "SELECT create_distributed_table('loc.activity', 'lead_id', colocate_with => 'none')")
expect "distributing a tracked table: refused (Citus: triggers)" "t" "$([ -n "$err" ] && echo t || echo "f: succeeded")"
err=$(fails -c "SET citus.enable_unsafe_triggers = on" -c "SELECT create_distributed_table('loc.activity', 'lead_id', colocate_with => 'none')")
case $err in
*"is distributed with Citus; its shard"*"cannot be scored"*) ok "distributing a tracked table with unsafe triggers allowed: refused by leadscore's trigger on a shard" ;;
*) not_ok "distributing a tracked table with unsafe triggers allowed: refused by leadscore's trigger on a shard" "$err" ;;
esac
expect "  ... the table stays local" "0" "$(q -c "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'loc.activity'::regclass")"
expect "  ... the scores are as they were" "$live" "$(scores)"

# A tracked table distributed while empty (nothing copied, nothing fired): every write is refused, through
# the coordinator and straight to a shard on a worker; recompute too.
q >/dev/null <<'SQL'
INSERT INTO leadscore.model (name) VALUES ('empty');
CREATE TABLE loc.contact (id integer PRIMARY KEY, title text);
SELECT leadscore.track_leads('empty', 'loc.contact', 'id');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES ('empty', 'vp', 'loc.contact', $$title = 'VP'$$, 5);
SET citus.enable_unsafe_triggers = on;
SELECT create_distributed_table('loc.contact', 'id');
SQL
for sql in "INSERT INTO loc.contact VALUES (1, 'VP')" \
           "INSERT INTO loc.contact SELECT g, 'VP' FROM generate_series(1, 100) g" \
           "COPY loc.contact (id) FROM PROGRAM 'seq 1 50'"; do
	err=$(fails -c "$sql")
	case $err in
	*"table loc.contact is distributed with Citus; its shard loc.contact_"*) ok "a write to a tracked table distributed while empty is refused: $sql" ;;
	*) not_ok "a write to a tracked table distributed while empty is refused: $sql" "$err" ;;
	esac
done
shard=$(psql -X -At -p "$worker1" -c "SELECT shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
	WHERE s.logicalrelid = 'loc.contact'::regclass AND p.groupid = (SELECT groupid FROM pg_dist_local_group) LIMIT 1")
err=$(fails -p "$worker1" -c "INSERT INTO $shard VALUES (-1, 'VP')")
case $err in
*"is distributed with Citus; its shard"*) ok "a write straight to a shard on a worker is refused" ;;
*) not_ok "a write straight to a shard on a worker is refused ($shard)" "$err" ;;
esac
expect "  ... and nothing was written" "0" "$(q -c "SELECT count(*) FROM loc.contact")"
err=$(fails -c "SELECT leadscore.recompute('empty')")
expect "recompute of a model whose table is distributed is refused" \
	"ERROR:  leadscore: tracked table loc.contact is a Citus table" "$err"

# leadscore's own state table distributed by a superuser: the next statement scoring into it is refused
# (the coordinator's table would be an empty shell), and the transaction changes nothing.
q -c "SET citus.enable_unsafe_triggers = on" -c "SELECT create_distributed_table('leadscore.state_int4', 'lead')" >/dev/null 2>&1
if [ "$(q -c "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'leadscore.state_int4'::regclass")" = 1 ]; then
	err=$(fails -c "INSERT INTO loc.activity (lead_id, kind, at) VALUES (1, 'visit', now())")
	expect "a statement scoring into a distributed state table is refused" \
		"ERROR:  leadscore: state table leadscore.state_int4 is a Citus table" "$err"
	expect "  ... and writes nothing" "0" "$(q -c "SELECT count(*) FROM loc.activity WHERE at > now() - interval '1 minute'")"
else
	not_ok "distributing leadscore.state_int4 (the setup of the next check)"
fi

# A distributed model deleted on the coordinator: its states go on every node, its configuration from every
# worker, its triggers from every shard.
sales_id=$(q -c "SELECT id FROM leadscore.model WHERE name = 'sales'")
q -c "DELETE FROM leadscore.model WHERE name = 'sales'" >/dev/null 2>"$WORK/err"
expect "deleting a distributed model: no state left on any node, no configuration on the workers, writes no longer scored" \
	"0|$(q -c "SELECT string_agg('0', ' ') FROM run_command_on_workers('SELECT 1')")|0" \
	"$(q -c "SELECT count(*) FROM leadscore.state_int8 WHERE model_id = $sales_id")|$(q -c "SELECT string_agg(result, ' ') FROM run_command_on_workers(\$\$SELECT count(*) FROM leadscore.model WHERE name = 'sales'\$\$)")|$(q -c "INSERT INTO crm.activity (lead_id, kind, at) VALUES (1, 'visit', now())" -c "SELECT count(*) FROM leadscore.state_int8 WHERE model_id = $sales_id")$(cat "$WORK/err")"

report
