#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 15 cluster (Debian's pg_virtualenv), dropped
# afterwards. The command sees PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
# Usage: scripts/with_pg.sh COMMAND [ARGS...]
set -euo pipefail
# pg_virtualenv -t takes the same port every time; another throwaway cluster running at once would
# make it fail, so hand pg_createcluster a free port through PGPORT.
for ((i = 0; i < 200; i++)); do
	p=$((54330 + (RANDOM % 2000)))
	[ -e "/var/run/postgresql/.s.PGSQL.$p" ] && continue
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
	export PGPORT=$p
	break
done
unset PGHOST PGDATABASE PGUSER PGPASSWORD
# fsync off: the cluster is thrown away; nothing measured here depends on disk flushes.
exec pg_virtualenv -t -v 15 -o 'fsync=off' -o 'max_connections=50' -o 'shared_buffers=512MB' "$@"
