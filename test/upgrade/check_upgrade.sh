#!/usr/bin/env bash
# Upgrade path test: for every older version with an install script, CREATE EXTENSION at that version then
# ALTER EXTENSION UPDATE must give the same objects (and the same definitions) as a fresh install of the
# default version. Run under scripts/with_pg.sh. Ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."

default=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" leadscore.control)
versions=$(ls sql/leadscore--*.sql | sed -n 's|sql/leadscore--\([0-9.]*\)\.sql$|\1|p' | sort -V)
passed=0
failed=0

# Every member object of the extension with its definition, sorted: the fingerprint of an install.
fingerprint() {
	psql -X -q -At -d "$1" <<'SQL'
SELECT pg_describe_object(classid, objid, objsubid) || ' | ' ||
       coalesce(CASE classid
           -- pg_get_functiondef refuses aggregates: their support functions and flags stand for them.
           WHEN 'pg_proc'::regclass THEN CASE WHEN (SELECT prokind FROM pg_proc WHERE oid = objid) = 'a'
               THEN (SELECT concat_ws(' ', aggtransfn, aggfinalfn, aggcombinefn, aggserialfn, aggdeserialfn,
                                      aggtranstype::regtype, proparallel)
                       FROM pg_aggregate JOIN pg_proc ON pg_proc.oid = aggfnoid WHERE aggfnoid = objid)
               ELSE pg_get_functiondef(objid) END
           WHEN 'pg_class'::regclass THEN (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', '
                                                             ORDER BY attnum)
                                             FROM pg_attribute WHERE attrelid = objid AND attnum > 0 AND NOT attisdropped)
           WHEN 'pg_trigger'::regclass THEN pg_get_triggerdef(objid)
           WHEN 'pg_constraint'::regclass THEN pg_get_constraintdef(objid)
           END, '')
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'leadscore')
 ORDER BY 1;
SQL
}

createdb ls_fresh
psql -X -q -d ls_fresh -c "CREATE EXTENSION leadscore"
fresh=$(fingerprint ls_fresh)
for v in $versions; do
	[ "$v" = "$default" ] && continue
	db="ls_from_${v//./_}"
	createdb "$db"
	psql -X -q -d "$db" -c "CREATE EXTENSION leadscore VERSION '$v'" -c "ALTER EXTENSION leadscore UPDATE"
	if [ "$(fingerprint "$db")" = "$fresh" ]; then
		echo "ok - $v updated to $default equals a fresh install"
		passed=$((passed + 1))
	else
		echo "not ok - $v updated to $default differs from a fresh install:"
		diff <(echo "$fresh") <(fingerprint "$db") | head -40 || true
		failed=$((failed + 1))
	fi
done
# A fresh install works at all, and no older version exists yet: say so rather than pass silently.
if [ -n "$fresh" ]; then
	echo "ok - fresh install of $default has $(echo "$fresh" | wc -l) member objects"
	passed=$((passed + 1))
else
	echo "not ok - fresh install of $default has no member objects"
	failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
