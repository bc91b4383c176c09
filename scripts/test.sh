#!/usr/bin/env bash
# Runs every test of leadscore: installs what is missing, builds, then the C++ core unit tests (ctest),
# the SQL regression tests (pg_regress) and the client tests (randomized exactness, concurrency,
# notifications, dump and restore), each against a throwaway PostgreSQL 15 cluster.
# Ends with "N passed, N failed" (one count per suite) and exits non-zero if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=()
suite() {
	local name=$1
	shift
	echo
	echo "=== $name"
	if "$@"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$name")
	fi
}

py=/usr/bin/python3
suite "core unit tests (ctest)" make -s unit
suite "exported symbols" bash test/symbols/check_exports.sh
suite "mechanical checks (formatting, boundary lint)" bash test/lint/run.sh
suite "documentation links and anchors" $py test/docs/check_links.py
suite "SQL regression tests (pg_regress)" bash -c 'scripts/with_pg.sh make -s installcheck || { cat build/regress/regression.diffs 2>/dev/null; exit 1; }'
suite "randomized exactness" scripts/with_pg.sh $py test/property/exactness.py
suite "stage changes by time (against a minute-by-minute replay)" scripts/with_pg.sh $py test/property/timeline.py
suite "sanitizers (ASan + UBSan build: SQL regression tests and property suites, reduced budget)" bash test/sanitize/run.sh
suite "least privilege (hostile roles, row-level security, profiles)" scripts/with_pg.sh $py test/security/security.py
suite "random queries never crash the server (sqlsmith, 10,000 queries)" scripts/with_pg.sh bash test/fuzz/sqlsmith.sh
suite "concurrency" scripts/with_pg.sh $py test/concurrency/concurrent.py
suite "sessions waiting on a configuration change" scripts/with_pg.sh $py test/concurrency/config_wait.py
suite "a configuration change on 200,000 leads under 4 writers (their longest wait reported)" scripts/with_pg.sh $py test/concurrency/config_load.py
suite "the same change published concurrently from a draft (the writers go on)" scripts/with_pg.sh $py test/concurrency/config_load.py --concurrently
suite "notifications" scripts/with_pg.sh $py test/notify/notify.py
suite "pg_cron job in its own database records a stage change" bash test/cron/pg_cron.sh
suite "client examples (psycopg; node-postgres when node is installed)" scripts/with_pg.sh bash test/clients/run.sh
suite "Citus cluster: the walkthrough, random and concurrent writes through every node scored exactly (skipped without Citus)" bash test/citus/run.sh
suite "dump and restore" scripts/with_pg.sh bash test/dump/dump_restore.sh
suite "upgrade paths" scripts/with_pg.sh bash test/upgrade/check_upgrade.sh
suite "predictive quality (planted model; Leads.csv against scikit-learn when ../shared exists)" scripts/with_pg.sh $py test/predict/compare_sklearn.py
suite "training over many columns never crashes (every Leads.csv column when ../shared exists; 64 generated)" scripts/with_pg.sh $py test/predict/wide.py
suite "trained models survive dump and restore" scripts/with_pg.sh bash test/predict/dump_models.sh
suite "trained models across sessions (versions, cache invalidation)" scripts/with_pg.sh $py test/predict/sessions.py

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
