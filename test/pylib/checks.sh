# The shell suites' checks, as test/pylib/checks.py's: source it, then
#   ok NAME / not_ok NAME [DETAIL] / expect NAME EXPECTED ACTUAL / skip WHY
# print one "ok - ..." / "not ok - ..." line each (a failure's detail as "#   " lines), and
#   report
# prints the closing line "N passed, N failed" (", N skipped" when something was skipped) and returns
# non-zero when a check failed: end a suite with `report`.
passed=0
failed=0
skipped=0
ok() {
	passed=$((passed + 1))
	echo "ok - $1"
}
not_ok() {
	failed=$((failed + 1))
	echo "not ok - $1"
	if [ -n "${2:-}" ]; then sed 's/^/#   /' <<<"$2"; fi
}
expect() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected: $2"$'\n'"got:      $3"; fi
}
skip() {
	skipped=$((skipped + 1))
	echo "ok - skipped: $1"
}
report() {
	if [ "$skipped" -gt 0 ]; then
		echo "$passed passed, $failed failed, $skipped skipped"
	else
		echo "$passed passed, $failed failed"
	fi
	[ "$failed" -eq 0 ]
}
