#!/bin/sh
# End-to-end tests for sieve-loopguard against a real Dovecot on 127.0.0.1.
#
#   tests/e2e/run.sh [BUILDDIR] [SCENARIO ...]
#
# BUILDDIR (or $LOOPGUARD_BUILDDIR; default: the repository root) is the
# configured build tree; the plugin is taken from BUILDDIR/src/.libs.
# Must run as root (Dovecot switches to the unprivileged users nobody,
# dovecot and dovenull).  Prints PASS:/FAIL: per scenario, exits non-zero
# if any failed.  Set KEEP_E2E_DIR=1 to keep the work directory (config,
# dovecot.log, homes, captured outgoing mail) for inspection.
set -u
here=$(cd "$(dirname "$0")" && pwd)
builddir=${LOOPGUARD_BUILDDIR:-$here/../..}
if [ $# -gt 0 ] && [ -d "$1" ]; then
	builddir=$1
	shift
fi
builddir=$(cd "$builddir" && pwd)

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: e2e tests must run as root (Dovecot drops privileges itself)"
	exit 77
fi
for prog in dovecot python3; do
	if ! command -v $prog >/dev/null 2>&1; then
		echo "SKIP: $prog not found"
		exit 77
	fi
done
if [ ! -f "$builddir/src/.libs/lib90_sieve_loopguard_plugin.so" ]; then
	echo "FAIL: setup: $builddir/src/.libs/lib90_sieve_loopguard_plugin.so" \
	     "not found; build first (make -C $builddir)"
	exit 1
fi

# Dovecot's processes get the modules from a staged copy (see stage.sh).
. "$here/../lib/stage.sh"
if [ -z "${LG_STAGE:-}" ]; then
	lg_stage_exec "$builddir" sh "$0" "$builddir" "$@"
	exit
fi

workdir=$(mktemp -d /tmp/loopguard-e2e.XXXXXX)
chmod 755 "$workdir"

cleanup() {
	# scenarios.py stops Dovecot itself; this covers a crash or ^C.
	if [ -f "$workdir/run/master.pid" ]; then
		pid=$(cat "$workdir/run/master.pid" 2>/dev/null)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null
			sleep 1
			if kill -0 "$pid" 2>/dev/null; then
				kill -9 "$pid" 2>/dev/null
			fi
		fi
	fi
	if [ "${KEEP_E2E_DIR:-}" = 1 ] || [ "${rc:-1}" != 0 ]; then
		echo "e2e work directory kept: $workdir"
	else
		rm -rf "$workdir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$here/scenarios.py" --workdir "$workdir" --builddir "$builddir" "$@"
rc=$?

# A build with the Redis driver runs the scenarios that apply to it once
# more, against a private redis-server (scenarios.py --store redis).
if grep -q '^#define HAVE_HIREDIS' "$builddir/sieve-loopguard-config.h" \
	2>/dev/null; then
	if [ -z "${LOOPGUARD_REDIS_SERVER:-}" ] &&
	   ! command -v redis-server >/dev/null 2>&1 &&
	   ! command -v redis-check-rdb >/dev/null 2>&1; then
		echo "FAIL: redis: built with Redis, but no redis-server" \
		     "(scripts/install-deps.sh installs redis-tools)"
		rc=1
	else
		python3 "$here/scenarios.py" --store redis \
			--workdir "$workdir/redis-run" --builddir "$builddir" \
			"$@" || rc=1
	fi
fi
exit $rc
