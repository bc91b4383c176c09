#!/usr/bin/env bash
# leadscore on Citus (make bench-citus): the cost of live scoring on a bulk load, against the same load
# without leadscore, on a three-node cluster (test/citus/cluster.sh: a coordinator and two workers on
# loopback) and on one server (scripts/with_pg.sh), at each size, all in the same run.
#
# Per size (BENCH_CITUS_SIZES, leads:events, default "20000:200000 200000:2000000"), on a fresh cluster and
# a fresh server:
#   plain      crm tables (lead, activity) distributed by the lead (on the cluster), no leadscore
#   leadscore  the same tables scored by the walkthrough's model of README.md#citus (a fit rule,
#              two event rules, two stages, half-life 30 days), distributed by leadscore.distribute()
# The load: one INSERT ... SELECT FROM generate_series of the events through the coordinator, leads
# taken in turn, a seventh of them unsubscribes, times over 40 days. BENCH_CITUS_RUNS runs of each
# (default 3 up to 200,000 events, 1 above), plain and leadscore in turn, each adding its events (both
# tables grow alike); the median is reported. Then the scored leads are counted (every lead scored).
#
# Report: lines "bench-citus: ..." on stdout: per size and setting the plain and leadscore times and their
# ratio, then how the ratio moves with the size. Uses an installed Citus, or builds it from
# ../shared/citus (build.sh) when that is there; otherwise says it skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = --size ]; then
	leads=${2%%:*}
	events=${2##*:}
	where=$3 # cluster or server
	runs=${BENCH_CITUS_RUNS:-$([ "$events" -le 200000 ] && echo 3 || echo 1)}
	q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
	q >/dev/null <<SQL
CREATE EXTENSION leadscore;
CREATE SCHEMA plain;
CREATE TABLE plain.lead (id bigint PRIMARY KEY, title text);
CREATE TABLE plain.activity (id bigserial, lead_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL,
                             PRIMARY KEY (lead_id, id));
CREATE SCHEMA crm;
CREATE TABLE crm.lead (id bigint PRIMARY KEY, title text);
CREATE TABLE crm.activity (id bigserial, lead_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL,
                           PRIMARY KEY (lead_id, id));
INSERT INTO leadscore.model (name, half_life) VALUES ('sales', '30 days');
SELECT leadscore.track_leads('sales', 'crm.lead', 'id');
SELECT leadscore.track_events('sales', 'crm.activity', 'lead_id', 'at');
INSERT INTO leadscore.rule (model, name, source, condition, points) VALUES
	('sales', 'vp', 'crm.lead', \$\$title = 'VP'\$\$, 10),
	('sales', 'visit', 'crm.activity', \$\$kind = 'visit'\$\$, 3),
	('sales', 'unsubscribed', 'crm.activity', \$\$kind = 'unsubscribe'\$\$, -8);
INSERT INTO leadscore.stage (model, name, min_score) VALUES ('sales', 'cold', 0), ('sales', 'hot', 12);
SQL
	if [ "$where" = cluster ]; then
		q -c "SELECT create_distributed_table('plain.lead', 'id')" \
			-c "SELECT create_distributed_table('plain.activity', 'lead_id', colocate_with => 'plain.lead')" >/dev/null
		q -c "CALL leadscore.distribute()" >/dev/null 2>&1
	fi
	for s in plain crm; do
		q -c "INSERT INTO $s.lead SELECT g, CASE WHEN g % 3 = 0 THEN 'VP' END FROM generate_series(1, $leads) g"
	done
	load() {
		local start end
		q -c "CHECKPOINT" >/dev/null 2>&1 || true
		start=$(date +%s.%N)
		q -c "INSERT INTO $1.activity (lead_id, kind, at) SELECT 1 + g % $leads, CASE WHEN g % 7 = 0 THEN 'unsubscribe' ELSE 'visit' END,
		             now() - (g % 960) * interval '1 hour' FROM generate_series(1, $events) g"
		end=$(date +%s.%N)
		awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}'
	}
	median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
	p=""
	s=""
	for ((r = 1; r <= runs; r++)); do
		p+="$(load plain) "
		s+="$(load crm) "
		echo "bench-citus: ($where, $leads leads, $events events, run $r: plain $(awk '{print $NF}' <<<"$p") s, leadscore $(awk '{print $NF}' <<<"$s") s)" >&2
	done
	scored=$(q -c "SELECT count(*) FROM leadscore.scores_at('sales')")
	printf '%s %s %s %s %s %s\n' "$where" "$leads" "$events" "$(median <<<"$p")" "$(median <<<"$s")" "$scored"
	exit 0
fi

pg_root=${LEADSCORE_PG_ROOT:+$(realpath "$LEADSCORE_PG_ROOT")}
pkglibdir=${pg_root:+$pg_root/usr/lib/postgresql/15/lib}
pkglibdir=${pkglibdir:-$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)}
if [ ! -f "$pkglibdir/citus.so" ]; then
	if [ -z "${LEADSCORE_PG_ROOT:-}" ] && [ -f ../shared/citus/build.sh ]; then
		bash ../shared/citus/build.sh >&2
	else
		echo "bench-citus: skipped: Citus is not installed (and ../shared/citus, its source, is not here)"
		exit 0
	fi
fi

results=()
for size in ${BENCH_CITUS_SIZES:-20000:200000 200000:2000000}; do
	results+=("$(test/citus/cluster.sh bash "$0" --size "$size" cluster)")
	results+=("$(scripts/with_pg.sh bash "$0" --size "$size" server)")
done
status=0
declare -A first
for line in "${results[@]}"; do
	read -r where leads events plain scored count <<<"$line"
	ratio=$(awk -v a="$scored" -v b="$plain" 'BEGIN {printf "%.2f", a / b}')
	echo "bench-citus: $where, $leads leads, $events events: plain $plain s, leadscore $scored s, leadscore/plain $ratio ($count leads scored)"
	[ "$count" = "$leads" ] || { echo "bench-citus: $where: $count leads scored, not $leads"; status=1; }
	if [ -z "${first[$where]:-}" ]; then
		first[$where]="$ratio at $events events"
	else
		echo "bench-citus: $where: leadscore/plain moves from ${first[$where]} to $ratio at $events events"
	fi
done
exit $status
