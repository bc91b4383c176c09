#!/usr/bin/env bash
# The demo: installs what is missing, builds and installs leadscore (scripts/setup.sh), then runs
# demo/demo.sql, a small CRM scored live, on a throwaway PostgreSQL 15 server (dropped afterwards).
# Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo
echo "demo: starting a throwaway PostgreSQL 15 server and running demo/demo.sql"
scripts/with_pg.sh psql -X -P pager=off -v ON_ERROR_STOP=1 -f demo/demo.sql
