#!/usr/bin/env bash
# Runs every test of sieve-loopguard: the C unit tests, the sieve-test
# scenarios and the end-to-end suite against a real Dovecot. Ends with the
# line "N passed, N failed" and exits non-zero when anything failed.
#
# Usage: tests/run-tests.sh [--valgrind] [--no-e2e] [BUILDDIR]
# --valgrind runs the unit tests a second time under valgrind.
set -u

srcdir=$(cd "$(dirname "$0")/.." && pwd)
valgrind=no
e2e=yes
while [ $# -gt 0 ]; do
	case "$1" in
	--valgrind) valgrind=yes ;;
	--no-e2e) e2e=no ;;
	*) break ;;
	esac
	shift
done
builddir=$(cd "${1:-$srcdir}" && pwd)
export LG_BUILDDIR="$builddir"

# Every suite runs with the built modules staged where Dovecot's
# unprivileged processes and its module loader find them.
. "$srcdir/tests/lib/stage.sh"
if [ -z "${LG_STAGE:-}" ]; then
	args=()
	[ "$valgrind" = yes ] && args+=(--valgrind)
	[ "$e2e" = no ] && args+=(--no-e2e)
	lg_stage_exec "$builddir" bash "$0" "${args[@]}" "$builddir"
	exit
fi

passed=0
failed=0
log=$(mktemp /tmp/loopguard-tests.XXXXXX)
trap 'rm -f "$log"' EXIT

# Counts the PASS:/FAIL: lines a suite printed; a suite that exits non-zero
# without printing a FAIL line still counts as one failure.
tally()
{
	local name=$1 rc=$2 p f
	p=$(grep -c '^PASS: ' "$log")
	f=$(grep -c '^FAIL: ' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $name exited with $rc"
		f=1
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $name ran no test"
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
}

# Dovecot's unit test framework prints "name ..... : ok" or ": FAILED".
run_unit()
{
	local test=$1 tag=$2 name rc
	shift 2
	name="$(basename "$test")$tag"
	echo "== unit: $name"
	(cd "$srcdir" && "$@" "$test" "$srcdir/tests/fixtures/looptest") \
		> "$log.raw" 2>&1
	rc=$?
	if [ "$rc" -eq 77 ]; then
		# not built in (e.g. the Redis store without hiredis)
		echo "    skipped: $(head -n 1 "$log.raw")"
		rm -f "$log.raw"
		return
	fi
	sed -n -e "s/^\(.*[^ .]\)[ .]*: ok\$/PASS: \1$tag/p" \
	       -e "s/^\(.*[^ .]\)[ .]*: FAILED\$/FAIL: \1$tag/p" \
	       "$log.raw" > "$log"
	grep -v -e ': ok$' -e '^$' "$log.raw" | sed 's/^/    /'
	if [ "$rc" -eq 213 ]; then
		echo "FAIL: $name: valgrind found errors" >> "$log"
	fi
	grep '^FAIL: ' "$log"
	tally "$name" "$rc"
	rm -f "$log.raw"
}

for test in "$builddir"/tests/unit/test-*; do
	[ -x "$test" ] && [ -f "$test" ] || continue
	run_unit "$test" ""
	if [ "$valgrind" = yes ]; then
		run_unit "$test" " (valgrind)" valgrind -q \
			--suppressions="$srcdir/tests/valgrind.supp" \
			--error-exitcode=213 --leak-check=full \
			--errors-for-leak-kinds=definite
	fi
done

for suite in "$srcdir"/tests/sieve/*.sh; do
	name=$(basename "$suite" .sh)
	echo "== sieve: $name"
	bash "$suite" > "$log" 2>&1
	rc=$?
	grep -v '^PASS: ' "$log"
	tally "$name" "$rc"
done

if [ "$e2e" = yes ] && [ -x "$srcdir/tests/e2e/run.sh" ]; then
	echo "== e2e"
	"$srcdir/tests/e2e/run.sh" "$builddir" > "$log" 2>&1
	rc=$?
	grep -v '^PASS: ' "$log"
	tally e2e "$rc"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
