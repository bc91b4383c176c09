#!/usr/bin/env bash
# Mechanical checks: formatting (test/lint/format.sh) and the C++/PostgreSQL boundary lint
# (test/lint/boundary.py, which checks its own fixtures first). Prints "N passed, N failed".
#
# FORMAT_PATHS: what the formatting check covers: every C++ file of the extension and of its core tests.
set -uo pipefail
cd "$(dirname "$0")/../.."

FORMAT_PATHS=(src test/core)

passed=0
failed=0
check() {
	local name=$1
	shift
	if "$@"; then
		echo "ok - $name"
		passed=$((passed + 1))
	else
		echo "not ok - $name"
		failed=$((failed + 1))
	fi
}
check "formatting (${FORMAT_PATHS[*]})" bash test/lint/format.sh "${FORMAT_PATHS[@]}"
check "boundary lint (src/pg)" /usr/bin/python3 test/lint/boundary.py
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
