#!/usr/bin/env bash
# Runs a command against a throwaway Citus cluster on loopback: a coordinator and two workers, one data
# directory and one free port each, run as user postgres (PostgreSQL refuses root), all dropped afterwards.
# Every node has shared_preload_libraries = 'citus' and max_prepared_transactions > 0 (two-phase commits
# across nodes); the coordinator is registered with citus_set_coordinator_host and the workers added with
# citus_add_node, in the database postgres. The command sees PGHOST, PGPORT (the coordinator's), PGUSER,
# PGDATABASE, and WORKER_PORTS (the workers' ports, space-separated). With CITUS_SPARE=1, a fourth node
# is started as well (Citus created in its database postgres), not added: SPARE_PORT, for a test that
# adds a worker to the cluster.
# With LEADSCORE_PG_ROOT set (scripts/private_install.sh), the nodes run from that copy of PostgreSQL.
# Usage: test/citus/cluster.sh COMMAND [ARGS...]
set -euo pipefail
if [ -n "${LEADSCORE_PG_ROOT:-}" ]; then
	bin=$(realpath "$LEADSCORE_PG_ROOT")/usr/lib/postgresql/15/bin
else
	bin=/usr/lib/postgresql/15/bin
fi
[ -x "$bin/postgres" ] || { echo "cluster: no PostgreSQL in $bin" >&2; exit 1; }
[ -f "$("$bin/pg_config" --pkglibdir)/citus.so" ] || { echo "cluster: Citus is not installed in $bin" >&2; exit 1; }

free_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((26000 + (RANDOM % 5000)))
		[[ " ${taken[*]:-} " == *" $p "* ]] && continue
		[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		echo "$p"
		return
	done
	echo "cluster: no free port" >&2
	exit 1
}

tmp=$(mktemp -d /tmp/leadscore-citus.XXXXXX)
if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; chown postgres: "$tmp"; else as_pg() { "$@"; }; fi
nodes=(coordinator worker1 worker2)
[ "${CITUS_SPARE:-}" = 1 ] && nodes+=(spare)
declare -A port
taken=()
for n in "${nodes[@]}"; do
	port[$n]=$(free_port)
	taken+=("${port[$n]}")
done
stop() {
	for n in "${nodes[@]}"; do
		[ -d "$tmp/$n" ] && as_pg "$bin/pg_ctl" -D "$tmp/$n" -m immediate -w stop >/dev/null 2>&1 || true
	done
	if [ "${CITUS_KEEP_LOGS:-}" ]; then
		for n in "${nodes[@]}"; do cp "$tmp/$n.log" "$CITUS_KEEP_LOGS.$n.log" 2>/dev/null || true; done
	fi
	rm -rf "$tmp"
}
trap stop EXIT

for n in "${nodes[@]}"; do
	as_pg "$bin/initdb" -D "$tmp/$n" -U postgres --auth=trust --no-sync >"$tmp/initdb.log" 2>&1 ||
		{ cat "$tmp/initdb.log" >&2; exit 1; }
	cat >>"$tmp/$n/postgresql.conf" <<CONF
port = ${port[$n]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$tmp'
shared_preload_libraries = 'citus'
max_prepared_transactions = 100
max_connections = 300
fsync = off
synchronous_commit = off
shared_buffers = 256MB
CONF
done
# Start the nodes together; each needs a few seconds.
for n in "${nodes[@]}"; do
	as_pg "$bin/pg_ctl" -D "$tmp/$n" -l "$tmp/$n.log" -w -t 120 start >/dev/null &
done
wait_ok=0
for job in $(jobs -p); do wait "$job" || wait_ok=1; done
if [ $wait_ok -ne 0 ]; then
	for n in "${nodes[@]}"; do tail -5 "$tmp/$n.log" >&2; done
	exit 1
fi

export PGHOST=$tmp PGUSER=postgres PGDATABASE=postgres PATH=$bin:$PATH
for n in "${nodes[@]}"; do
	psql -X -q -v ON_ERROR_STOP=1 -p "${port[$n]}" -c 'CREATE EXTENSION citus' >/dev/null
done
psql -X -q -v ON_ERROR_STOP=1 -p "${port[coordinator]}" >/dev/null <<SQL
SELECT citus_set_coordinator_host('127.0.0.1', ${port[coordinator]});
SELECT citus_add_node('127.0.0.1', ${port[worker1]});
SELECT citus_add_node('127.0.0.1', ${port[worker2]});
SQL
export PGPORT=${port[coordinator]} WORKER_PORTS="${port[worker1]} ${port[worker2]}"
[ "${CITUS_SPARE:-}" = 1 ] && export SPARE_PORT=${port[spare]}
"$@"
