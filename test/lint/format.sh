#!/usr/bin/env bash
# Formatting check: every C++ file (*.cpp, *.h) under the given paths (default: src test/core) must be as
# clang-format leaves it with the repository's .clang-format (tuned with clang-format 14, the one of Debian
# bookworm: another version may format some lines otherwise). Names the files that are off, the command
# that fixes them, and exits 1; exits 0 when all are formatted.
#
# test/sanitize/preload.c is not checked: it is C in PostgreSQL's own style (pgindent: a function's return
# type on its own line, /* */ comments aligned with tabs), which the C++ style would rewrite.
#
#   bash test/lint/format.sh                 # src and test/core
#   bash test/lint/format.sh test/core       # some paths only
set -uo pipefail
cd "${BASH_SOURCE[0]%/*}/../.."

if ! command -v clang-format >/dev/null 2>&1; then
	echo "format: clang-format is not installed: install the Debian package clang-format (bash scripts/setup.sh does)"
	exit 1
fi
version=$(clang-format --version | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')

paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(src test/core)
for p in "${paths[@]}"; do
	[ -e "$p" ] || { echo "format: no such path: $p"; exit 1; }
done
mapfile -t files < <(find "${paths[@]}" -type f \( -name '*.cpp' -o -name '*.h' \) | sort)
if [ ${#files[@]} -eq 0 ]; then
	echo "format: no C++ file under ${paths[*]}"
	exit 1
fi

off=()
for f in "${files[@]}"; do
	if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		# Lines that would change, to tell a stray space from a file never formatted.
		n=$(clang-format "$f" | diff "$f" - | grep -c '^[<>]')
		echo "format: $f is not formatted ($n lines would change)"
		off+=("$f")
	fi
done

if [ ${#off[@]} -gt 0 ]; then
	echo "format: ${#off[@]} of ${#files[@]} files are not formatted as .clang-format says (clang-format $version)."
	echo "format: to fix them: clang-format -i ${off[*]}"
	echo "format: to see the changes first: clang-format FILE | diff FILE -"
	exit 1
fi
echo "format: ${#files[@]} files formatted (${paths[*]}; clang-format $version)"
