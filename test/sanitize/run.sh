#!/usr/bin/env bash
# The SQL regression tests (pg_regress, every sql/NAME.sql as `make installcheck` runs them) and the
# randomized property suites (test/property/exactness.py and timeline.py, with a smaller budget) run
# once against leadscore built with AddressSanitizer and UndefinedBehaviorSanitizer, loaded into a
# throwaway PostgreSQL 15 server that has libasan and libubsan preloaded. The other suites run the
# normal build: an out-of-bounds access, a use after free, a shift too far, a double out of an
# integer's range converted to it or a misaligned read in leadscore's C++ can go unseen there (a wrong
# value now and then, a crash elsewhere later); here the first one ends its backend with a report.
#
# Fails (exit 1) on any sanitizer report (a file under build/sanitize/logs/, or "runtime error:" or
# "...Sanitizer" in the server log: UBSan reports there), on a backend crash, on a failing regression
# test or property check, and when no test ran. Prints the counts of regression tests,
# property checks and sanitizer reports, and the first lines of each report.
#
# Nothing is built or installed outside build/sanitize/ (git-ignored):
#   build/sanitize/src    a copy of Makefile, leadscore.control, src/, sql/ and expected/ (the working
#                         tree's, untracked files included), built there with PGXS and the sanitizer
#                         flags: the source tree's objects and the system's PostgreSQL stay untouched;
#   build/sanitize/root   a copy of /usr/lib/postgresql/15 and /usr/share/postgresql/15 with the
#                         sanitized leadscore installed in it (`make install DESTDIR=...`); PostgreSQL
#                         finds its share and lib directories relative to its executable, so the
#                         server started from that copy's bin loads that copy's leadscore.so (checked:
#                         pg_config's PKGLIBDIR, and the backend's own /proc/self/maps after LOAD);
#   build/sanitize/logs   the build log, the server log, the ASan reports (asan.PID)
#                         and each suite's output, kept after the run (pg_regress's results and
#                         regression.diffs: build/sanitize/src/build/regress).
# The cluster lives in a temporary directory (fsync off, its socket there, no TCP), run by the
# postgres user when this script runs as root, stopped by its own pg_ctl and removed at exit (also on
# failure, Ctrl-C or kill).
#
# A report ends the backend that hit it (halt_on_error; abort_on_error=0: an exit, no core dump); the
# postmaster restarts every session as after any backend crash, and the tests go on: one run shows
# every report (a test running during the restart fails too). Leaks are not checked (detect_leaks=0):
# PostgreSQL frees by memory context and at process exit, not chunk by chunk.
# Besides the sanitizers, libstdc++'s own checks: _GLIBCXX_ASSERTIONS (operator[] out of range, front()
# of an empty vector, * of an empty optional... abort, reported by ASan's handle_abort) and
# _GLIBCXX_SANITIZE_VECTOR (a read past a vector's size but within its capacity: container-overflow).
#
# PostgreSQL itself is not instrumented: the runtimes come in by LD_PRELOAD, with a helper of ours
# between them (test/sanitize/preload.c: postgres would hang at startup, and UBSan lose its options in
# a backend). PostgreSQL's own code is checked only where it goes through an intercepted libc function
# (memcpy, strlen...), e.g. when leadscore hands it a bad pointer.
# What ASan cannot see: palloc'd memory is carved out of a memory context's malloc'd blocks, so an
# overflow inside a block (past one chunk into the next) and a use of a chunk freed back into its
# context are invisible; only leadscore's own malloc/new memory (std::vector, std::string...) and the
# blocks' edges are checked. Seeing inside contexts needs a PostgreSQL built for it (USE_VALGRIND and
# a run under Valgrind, or CLOBBER_FREED_MEMORY / MEMORY_CONTEXT_CHECKING of an --enable-cassert
# build): a rebuilt PostgreSQL, more than this suite should cost.
#
# Takes some 5 minutes on 2 cores (the build 1 to 2.5 of them, rebuilt from scratch every run). The
# budget of the property suites (the normal run: exactness 3 seeds x 2000 operations, timeline seeds 1 2):
#   SANITIZE_EXACTNESS_OPS (default 400), SANITIZE_EXACTNESS_SEEDS (default "1 2"),
#   SANITIZE_TIMELINE_SEEDS (default "1").
# SANITIZE_PATCH=FILE applies a patch (-p1) to the build copy only: to check that the suite catches a
# planted bug (it must fail), or to try a fix without touching the source tree.
# Needs what scripts/setup.sh installs (postgresql-server-dev-15 for PGXS, g++ with libasan/libubsan,
# python3-psycopg2).
#
# Usage (from the repository root): bash test/sanitize/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$PWD
here=$repo/test/sanitize
t_start=$SECONDS

exactness_ops=${SANITIZE_EXACTNESS_OPS:-400}
exactness_seeds=${SANITIZE_EXACTNESS_SEEDS:-1 2}
timeline_seeds=${SANITIZE_TIMELINE_SEEDS:-1}

sys_pg=/usr/lib/postgresql/15
sys_share=/usr/share/postgresql/15
sys_pg_config=$sys_pg/bin/pg_config
top=$repo/build/sanitize
src=$top/src
root=$top/root
logs=$top/logs
pg=$root$sys_pg                 # the copy: bin/, lib/
bin=$pg/bin
py=/usr/bin/python3

# float-cast-overflow (a double out of an integer's range converted to it: time arithmetic) is undefined
# behaviour that gcc's "undefined" group leaves out. Signed overflow is not checked: PostgreSQL's flags
# (CXXFLAGS of pg_config) carry -fwrapv, which defines it, in this build as in the normal one.
SAN='-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer'
SAN+=' -fno-sanitize-recover=undefined,float-cast-overflow'
STL='-D_GLIBCXX_ASSERTIONS -D_GLIBCXX_SANITIZE_VECTOR'

die() { echo "sanitize: $*"; echo "sanitizer suite: FAILED (setup)"; exit 1; }
step() { echo "== $* ($((SECONDS - t_start)) s)"; }

[ -x "$sys_pg_config" ] || die "$sys_pg_config missing (run scripts/setup.sh)"
[ -f "$($sys_pg_config --pgxs)" ] || die "PGXS missing (postgresql-server-dev-15; run scripts/setup.sh)"
libasan=$(readlink -f "$(g++ -print-file-name=libasan.so)")
libubsan=$(readlink -f "$(g++ -print-file-name=libubsan.so)")
{ [ -f "$libasan" ] && [ -f "$libubsan" ]; } || die "libasan.so / libubsan.so of g++ not found"

# The server runs as postgres when we are root (initdb and pg_ctl refuse root); clients run as us.
if [ "$(id -u)" = 0 ]; then
	as_pg() { runuser -u postgres -- "$@"; }
	give_pg() { chown -R postgres: "$@"; }
else
	as_pg() { "$@"; }
	give_pg() { :; }
fi

# The long steps run in the background and are waited for, so that Ctrl-C or kill reaches the traps at
# once: bash lets a foreground command finish first, and skips an INT trap when that command handled
# SIGINT itself (pg_regress, python). The trap then ends that child, by its pid.
child=
run() {
	"$@" &
	child=$!
	wait "$child"
	local rc=$?
	child=
	return "$rc"
}
tmp=
data=
cleanup() {
	if [ -n "$child" ]; then kill "$child" 2>/dev/null; fi
	if [ -n "$data" ] && [ -f "$data/postmaster.pid" ]; then
		as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
	fi
	if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- 1. the sanitized build, from a copy of the sources -----------------------------------------
step "building leadscore with $SAN $STL in build/sanitize/src"
rm -rf "$src" "$logs"
mkdir -p "$src" "$logs"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard -- Makefile leadscore.control src sql expected |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |   # not deleted ones
		xargs -0 cp --parents -t "$src" || die "copying the sources failed"
else
	find Makefile leadscore.control src sql expected -type f ! -name '*.o' ! -name '*.so' ! -name '*.d' \
		! -name '*.bc' -print0 | xargs -0 cp --parents -t "$src" || die "copying the sources failed"
fi
if [ -n "${SANITIZE_PATCH:-}" ]; then
	command -v patch >/dev/null || die "SANITIZE_PATCH needs patch (apt-get install patch)"
	patch -s -p1 -d "$src" <"$SANITIZE_PATCH" || die "SANITIZE_PATCH $SANITIZE_PATCH does not apply"
	echo "applied $SANITIZE_PATCH to build/sanitize/src (not to the source tree)"
fi
mkvar() { make -s --no-print-directory -C "$src" -f Makefile -f "$here/printvar.mk" "print-$1" PG_CONFIG="$sys_pg_config"; }
makefile_cxxflags=$(mkvar PG_CXXFLAGS)
makefile_shlib_link=$(mkvar SHLIB_LINK)
{ [ -n "$makefile_cxxflags" ] && [ -n "$makefile_shlib_link" ]; } || die "no PG_CXXFLAGS / SHLIB_LINK in the Makefile"
cxxflags="$makefile_cxxflags $SAN $STL -O1 -g"
shlib_link="$makefile_shlib_link $SAN"
if ! run make -C "$src" -j"$(nproc)" PG_CONFIG="$sys_pg_config" PG_CXXFLAGS="$cxxflags" SHLIB_LINK="$shlib_link" \
	>"$logs/build.log" 2>&1; then
	grep -E 'error|Error' "$logs/build.log" | head -40
	die "the sanitized build failed (build/sanitize/logs/build.log)"
fi
so=$src/leadscore.so
syms=$(nm -D "$so")   # (not nm | grep -q: with pipefail, nm's SIGPIPE would fail the pipe)
grep -q ' U __asan_report_load' <<<"$syms" || die "leadscore.so has no ASan instrumentation"
grep -q ' U __ubsan_handle_' <<<"$syms" || die "leadscore.so has no UBSan instrumentation"

# The preloaded helper that keeps an uninstrumented postgres from hanging at startup under libasan.
shim=$top/preload.so
gcc -O2 -Wall -shared -fPIC -o "$shim" "$here/preload.c" -ldl >>"$logs/build.log" 2>&1 ||
	die "building test/sanitize/preload.c failed"

# --- 2. a private PostgreSQL tree with the sanitized leadscore ----------------------------------
step "copying PostgreSQL 15 into build/sanitize/root and installing the sanitized leadscore there"
case $root in /*/build/sanitize/root) ;; *) die "unexpected root $root" ;; esac
rm -rf "$root"
mkdir -p "$root$(dirname $sys_pg)" "$root$(dirname $sys_share)"
cp -a "$sys_pg" "$root$(dirname $sys_pg)/" || die "copying $sys_pg failed"
cp -a "$sys_share" "$root$(dirname $sys_share)/" || die "copying $sys_share failed"
# The copy holds whatever leadscore the system has (the normal build): out with it first.
rm -f "$pg/lib/leadscore.so" "$root$sys_share"/extension/leadscore.control "$root$sys_share"/extension/leadscore--*.sql
make -s -C "$src" install PG_CONFIG="$sys_pg_config" DESTDIR="$root" >>"$logs/build.log" 2>&1 ||
	die "make install DESTDIR=$root failed"
cmp -s "$so" "$pg/lib/leadscore.so" || die "the copy's leadscore.so is not the sanitized build"
[ "$("$bin/pg_config" --pkglibdir)" = "$pg/lib" ] || die "the copy's pg_config does not point at the copy"
[ "$("$bin/pg_config" --sharedir)" = "$root$sys_share" ] || die "the copy's sharedir is not the copy"

# --- 3. a throwaway server with the sanitizer runtimes preloaded --------------------------------
step "starting a throwaway server from the copy"
tmp=$(mktemp -d /tmp/leadscore-sanitize.XXXXXX)
data=$tmp/data
give_pg "$tmp" "$logs"
for ((i = 0; i < 200; i++)); do
	port=$((22000 + (RANDOM % 2000)))
	[ -e "/var/run/postgresql/.s.PGSQL.$port" ] && continue
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
	break
done
as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync >"$logs/initdb.log" 2>&1 ||
	{ cat "$logs/initdb.log"; die "initdb failed"; }
# jit off: LLVM compiles PostgreSQL's own expressions, nothing of leadscore's; it only costs time here.
cat >>"$data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$tmp'
fsync = off
max_connections = 50
jit = off
EOF
# allocator_may_return_null: a failed malloc returns NULL (PostgreSQL's "out of memory"), as without ASan.
asan_options="detect_leaks=0:abort_on_error=0:halt_on_error=1:handle_abort=1:allocator_may_return_null=1"
asan_options+=":check_initialization_order=1:strict_init_order=1:log_path=$logs/asan:print_summary=1"
# UBSan's log_path is not honoured when libasan is loaded too (gcc 12): its reports go to stderr, the
# server log, where they are counted. It stays set for a runtime that honours it.
ubsan_options="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan:print_summary=1"
# libasan first (ASan insists), then the helper (test/sanitize/preload.c says why), then libubsan.
as_pg env LD_PRELOAD="$libasan $shim $libubsan" ASAN_OPTIONS="$asan_options" UBSAN_OPTIONS="$ubsan_options" \
	"$bin/pg_ctl" -D "$data" -l "$logs/server.log" -w -t 120 start >/dev/null ||
	{ tail -30 "$logs/server.log"; die "the server did not start"; }

for v in $(env | grep -o '^PG[A-Z]*='); do unset "${v%=}"; done
export PGHOST=$tmp PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql_() { "$bin/psql" -X -v ON_ERROR_STOP=1 -Atq "$@"; }
# After a backend's report the server restarts its sessions (crash recovery, a second or so).
wait_ready() {
	local i
	for ((i = 0; i < 120; i++)); do
		"$bin/pg_isready" -q && return 0
		sleep 0.5
	done
	echo "sanitize: the server does not accept connections"
	return 1
}

# The server is the copy, and it loads the sanitized library (and libasan) into its backends.
[ "$(psql_ -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")" = "$pg/lib" ] ||
	die "the server's PKGLIBDIR is not the copy's"
maps=$(psql_ -c "LOAD 'leadscore'" -c "SELECT pg_read_file('/proc/self/maps')") || die "LOAD 'leadscore' failed"
grep -qF "$pg/lib/leadscore.so" <<<"$maps" || die "the backend did not map $pg/lib/leadscore.so"
grep -q 'libasan' <<<"$maps" || die "the backend has no libasan"
echo "server on port $PGPORT (socket in $tmp) loads $pg/lib/leadscore.so, with $(basename "$libasan") preloaded"

# --- 4. the tests ---------------------------------------------------------------------------
tests_failed=0
failures=()

step "SQL regression tests (pg_regress, as make installcheck runs them)"
# The copy's pg_config: the copy's pg_regress and psql, the Makefile's REGRESS list and options.
# Results and regression.diffs in build/sanitize/src/build/regress (the Makefile's --outputdir).
run make -s -C "$src" installcheck PG_CONFIG="$bin/pg_config" >"$logs/regress.out" 2>&1
regress_rc=$?
cat "$logs/regress.out"
regress_run=$(grep -cE '^(test | +)[[:alnum:]_]+ +\.\.\. ' "$logs/regress.out")
regress_failed=$(grep -cE '^(test | +)[[:alnum:]_]+ +\.\.\. .*(FAILED|failed)' "$logs/regress.out")
if [ "$regress_rc" -ne 0 ] || [ "$regress_run" -eq 0 ]; then
	tests_failed=1
	failures+=("SQL regression tests")
	head -200 "$src/build/regress/regression.diffs" 2>/dev/null
fi

# Each property suite in a database of its own: what one leaves cannot change the other.
prop_passed=0
prop_failed=0
property() {
	local name=$1 db=$2
	shift 2
	step "$name"
	if ! wait_ready || ! psql_ -c "CREATE DATABASE $db"; then
		tests_failed=1
		failures+=("$name (did not run)")
		return
	fi
	PGDATABASE=$db run "$py" "$@" >"$logs/$db.out" 2>&1
	local rc=$?
	tail -n 40 "$logs/$db.out"
	local last
	last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$logs/$db.out" | tail -1)
	if [ -z "$last" ]; then
		echo "$name: no closing 'N passed, N failed' line (exit status $rc)"
		prop_failed=$((prop_failed + 1))
		tests_failed=1
		failures+=("$name")
		return
	fi
	prop_passed=$((prop_passed + ${last%% passed*}))
	local f=${last#*passed, }
	prop_failed=$((prop_failed + ${f%% failed}))
	if [ "$rc" -ne 0 ] || [ "${f%% failed}" -ne 0 ]; then
		tests_failed=1
		failures+=("$name")
	fi
}
# shellcheck disable=SC2086  # the seeds are words
property "randomized exactness (--ops $exactness_ops, seeds $exactness_seeds)" prop_exactness \
	test/property/exactness.py --ops "$exactness_ops" --log-dir "$logs" $exactness_seeds
# shellcheck disable=SC2086
property "stage changes by time (seeds $timeline_seeds)" prop_timeline test/property/timeline.py $timeline_seeds

# --- 5. the reports -------------------------------------------------------------------------
step "stopping the server"
as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 120 stop >/dev/null || echo "sanitize: pg_ctl stop failed"

shopt -s nullglob
report_files=("$logs"/asan.* "$logs"/ubsan.*)
shopt -u nullglob
# UBSan's reports ("runtime error:", with their stacks) and any ASan output that missed its files.
log_reports=$(grep -cE 'runtime error:|ERROR: (Address|Leak)Sanitizer' "$logs/server.log")
log_mentions=$(grep -cE 'runtime error:|Sanitizer' "$logs/server.log")
reports=$((${#report_files[@]} + log_reports))
[ "$log_mentions" -gt 0 ] && [ "$reports" -eq 0 ] && reports=1
crashes=$(grep -cE 'server process \(PID [0-9]+\) (was terminated by signal|exited with exit code)' "$logs/server.log")
for r in "${report_files[@]}"; do
	echo
	echo "=== sanitizer report ${r#"$repo"/}"
	grep -m1 -E 'ERROR: AddressSanitizer|runtime error:|SUMMARY' "$r"
	grep -E '^ +#[0-9]+ ' "$r" | head -12
done
if [ "$log_mentions" -gt 0 ]; then
	echo
	echo "=== sanitizer reports in the server log (build/sanitize/logs/server.log)"
	grep -E -A12 'runtime error:|Sanitizer' "$logs/server.log" | head -80
fi
if [ "$crashes" -gt 0 ]; then
	echo
	echo "=== backend crashes in the server log"
	grep -E 'server process \(PID [0-9]+\)' "$logs/server.log" | head -20
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "regression tests: $regress_run run, $regress_failed failed"
echo "property checks: $prop_passed passed, $prop_failed failed"
echo "sanitizer reports: $reports (${#report_files[@]} report files, $log_reports in the server log); backend crashes: $crashes"
echo "logs: build/sanitize/logs; wall time $((SECONDS - t_start)) s"
if [ "$tests_failed" -ne 0 ] || [ "$reports" -ne 0 ] || [ "$crashes" -ne 0 ]; then
	echo "sanitizer suite: FAILED"
	exit 1
fi
echo "sanitizer suite: passed"
