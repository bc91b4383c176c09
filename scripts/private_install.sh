#!/usr/bin/env bash
# Installs the working tree's leadscore into a private copy of PostgreSQL 15 (ROOT, default
# build/pgroot), not into the system's: to run the tests or the benchmarks of a change while another run
# uses the system's installation (`make install` overwrites leadscore.so in place, under the feet of any
# server that has it loaded). PostgreSQL finds its share and lib directories relative to its executable, so
# a server started from ROOT's bin loads ROOT's leadscore. Then run a suite against it with
#   LEADSCORE_PG_ROOT=ROOT scripts/with_pg.sh COMMAND...
# (scripts/with_pg.sh starts its throwaway cluster from ROOT and puts ROOT's bin first on PATH, so that
# pg_config, psql, pg_dump and `make installcheck` are the copy's.)
# Usage: scripts/private_install.sh [ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(realpath -m "${1:-build/pgroot}")
sys_pg=/usr/lib/postgresql/15
sys_share=/usr/share/postgresql/15
sys_pg_config=$sys_pg/bin/pg_config
[ -x "$sys_pg_config" ] || { echo "private_install: $sys_pg_config missing (run scripts/setup.sh)" >&2; exit 1; }
case $root in / | /usr | /usr/*) echo "private_install: refusing ROOT $root" >&2; exit 1 ;; esac
if [ ! -x "$root$sys_pg/bin/postgres" ]; then
	mkdir -p "$root$(dirname $sys_pg)" "$root$(dirname $sys_share)"
	cp -a "$sys_pg" "$root$(dirname $sys_pg)/"
	cp -a "$sys_share" "$root$(dirname $sys_share)/"
fi
# Whatever leadscore the copy had (the system's when copied, or an earlier private install): out with it.
rm -f "$root$sys_pg/lib/leadscore.so" "$root$sys_share"/extension/leadscore.control "$root$sys_share"/extension/leadscore--*.sql
make -s -j"$(nproc)" PG_CONFIG="$sys_pg_config"
make -s install PG_CONFIG="$sys_pg_config" DESTDIR="$root" >/dev/null
cmp -s leadscore.so "$root$sys_pg/lib/leadscore.so"
[ "$("$root$sys_pg/bin/pg_config" --pkglibdir)" = "$root$sys_pg/lib" ] ||
	{ echo "private_install: the copy's pg_config does not point at the copy" >&2; exit 1; }
echo "leadscore installed into $root (use: LEADSCORE_PG_ROOT=$root scripts/with_pg.sh COMMAND...)"
