#!/usr/bin/env bash
# The shared library exports exactly the C functions the install script names (plus PostgreSQL's module
# entry points): nothing hidden that SQL needs, no C++ symbol leaking out.
set -euo pipefail
cd "$(dirname "$0")/../.."
exported=$(nm -D --defined-only leadscore.so | awk '{print $3}' | grep -v -e '^Pg_magic_func$' -e '^_PG_init$' | sort)
named=$(grep -ho "'MODULE_PATHNAME', 'leadscore_[a-z_]*'" sql/leadscore--*.sql | grep -o "'leadscore_[a-z_]*'" | tr -d "'" | sort -u | sed 'p;s/^/pg_finfo_/' | sort)
if [ "$exported" = "$named" ]; then
	echo "ok: leadscore.so exports the $(echo "$named" | wc -l) symbols the SQL scripts name"
else
	echo "not ok: exported symbols differ from those the SQL scripts name"
	diff <(echo "$named") <(echo "$exported") || true
	exit 1
fi
