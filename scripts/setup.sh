#!/usr/bin/env bash
# Installs what leadscore needs on Debian bookworm (as root, or through sudo), builds it and
# installs the extension into the local PostgreSQL 15. Safe to run again.
# Usage: scripts/setup.sh [--tests]
#   (none)    what the extension and the demo need: PostgreSQL 15 with its development files, g++, make
#   --tests   and what the tests and benchmarks need: CMake and GoogleTest (core tests), Python with
#             psycopg and scikit-learn (client tests), sqlsmith (fuzzing), clang-format and universal-ctags
#             (mechanical checks), pg_cron (the scheduled-job test), and when ../shared/citus (Citus's
#             source) is beside the checkout, the packages its build needs (the Citus test builds it).
#             Node.js is not installed: the node-postgres examples' test runs where node and its pg
#             module are, and says it skipped otherwise
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(postgresql-15 postgresql-server-dev-15 postgresql-client-15 libpq-dev g++ make)
case "${1:-}" in
"") ;;
--tests) packages+=(cmake libgtest-dev python3 python3-psycopg2 python3-psycopg python3-sklearn sqlsmith
                    clang-format universal-ctags postgresql-15-cron)
	if [ -f ../shared/citus/build.sh ]; then
		packages+=(build-essential libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libssl-dev
		           libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev)
	fi ;;
*) echo "usage: scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac
need=()
for pkg in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "setup: installing ${need[*]}"
	sudo_ apt-get update -qq
	sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

make -s -j"$(nproc)" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
sudo_ make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
echo "setup: leadscore built and installed into PostgreSQL 15"
