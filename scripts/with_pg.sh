#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 15 cluster (Debian's pg_virtualenv), dropped
# afterwards. The command sees PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
# With LEADSCORE_PG_ROOT set (a private copy of PostgreSQL made by scripts/private_install.sh), the
# cluster is started from that copy instead, its bin first on PATH (pg_config, psql, pg_dump...).
# Usage: scripts/with_pg.sh COMMAND [ARGS...]
set -euo pipefail
# pg_virtualenv -t takes the same port every time; another throwaway cluster running at once would
# make it fail, so hand pg_createcluster a free port through PGPORT. Ports below Linux's ephemeral range
# (32768-60999): a port there can be held by any outgoing connection's local end, which the probe below
# does not see, and the server then fails to bind it (seen once in CI). The other throwaway servers take
# their own ranges below it: test/sanitize 22000, test/cron 24000, test/citus 26000.
for ((i = 0; i < 200; i++)); do
	p=$((20000 + (RANDOM % 2000)))
	[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
	export PGPORT=$p
	break
done
unset PGHOST PGDATABASE PGUSER PGPASSWORD
if [ -n "${LEADSCORE_PG_ROOT:-}" ]; then
	bin=$(realpath "$LEADSCORE_PG_ROOT")/usr/lib/postgresql/15/bin
	[ -x "$bin/postgres" ] || { echo "with_pg: no PostgreSQL copy in $LEADSCORE_PG_ROOT (scripts/private_install.sh)" >&2; exit 1; }
	tmp=$(mktemp -d /tmp/leadscore-pg.XXXXXX)
	if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; chown postgres: "$tmp"; else as_pg() { "$@"; }; fi
	stop() { as_pg "$bin/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
	trap stop EXIT
	as_pg "$bin/initdb" -D "$tmp/data" -U postgres --auth=trust --no-sync >"$tmp/initdb.log" 2>&1 ||
		{ cat "$tmp/initdb.log" >&2; exit 1; }
	cat >>"$tmp/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = 'localhost'
unix_socket_directories = '$tmp'
fsync = off
max_connections = 50
shared_buffers = 512MB
CONF
	as_pg "$bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 120 start >/dev/null ||
		{ tail -20 "$tmp/server.log" >&2; exit 1; }
	export PGHOST=$tmp PGUSER=postgres PGDATABASE=postgres PATH=$bin:$PATH
	"$@"
	exit $?
fi
# fsync off: the cluster is thrown away; nothing measured here depends on disk flushes.
exec pg_virtualenv -t -v 15 -o 'fsync=off' -o 'max_connections=50' -o 'shared_buffers=512MB' "$@"
