#!/bin/sh
# Configures and builds sieve-loopguard in the source tree against the
# installed Dovecot and Pigeonhole headers. Warnings are errors. The build's
# output goes to build.log and is shown when something fails.
set -e
cd "$(dirname "$0")/.."

log=build.log
: > $log
fail()
{
	cat $log
	echo "build failed (see $log)" >&2
	exit 1
}

echo "Building sieve-loopguard ..."
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
	./autogen.sh >> $log 2>&1 || fail
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
	./configure --with-dovecot=/usr/lib/dovecot \
		--with-pigeonhole=/usr/include/dovecot/sieve \
		--enable-werror >> $log 2>&1 || fail
fi
make -j2 >> $log 2>&1 || fail
make -j2 check TESTS= >> $log 2>&1 || fail
echo "Built src/.libs/lib90_sieve_loopguard_plugin.so and" \
	"src/doveadm/.libs/lib10_doveadm_loopguard_plugin.so"
