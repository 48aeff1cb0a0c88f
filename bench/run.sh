#!/bin/sh
# Builds and runs the benchmarks. Figures are ratios measured side by side
# in one run; absolute numbers depend on the machine and its load.
# Usage: bench/run.sh [BUILDDIR] [STATE-DIR]
set -e
srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-$srcdir}
statedir=${2:-$(mktemp -d /var/tmp/loopguard-bench.XXXXXX)}
make -s -C "$builddir/bench" benchmarks
"$builddir/bench/bench-looptest"
echo
"$builddir/bench/bench-ratelimit" "$statedir"
echo
"$builddir/bench/bench-full-store" "$statedir"
echo
"$builddir/bench/bench-fingerprints" "$statedir"
# Real-Dovecot delivery benchmarks: need root (exit 77, SKIP, otherwise),
# with the built modules staged as for the tests (tests/lib/stage.sh)
. "$srcdir/tests/lib/stage.sh"
rc=0
for b in bench-delivery-overhead bench-vs-duplicate bench-slow-disk bench-redis; do
	echo
	lg_stage_exec "$builddir" \
		"$srcdir/bench/$b" --builddir "$builddir" || {
		s=$?
		[ $s = 77 ] || rc=$s
	}
done
exit $rc
