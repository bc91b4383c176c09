#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL 15 cluster (Debian's pg_virtualenv), dropped
# afterwards. The command sees PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
# Usage: scripts/with_pg.sh COMMAND [ARGS...]
set -euo pipefail
# fsync off: the cluster is thrown away; nothing measured here depends on disk flushes.
exec pg_virtualenv -t -v 15 -o 'fsync=off' -o 'max_connections=50' -o 'shared_buffers=512MB' "$@"
