#!/bin/sh
# Configures and builds sieve-loopguard in the source tree against the
# installed Dovecot and Pigeonhole headers. Warnings are errors.
set -e
cd "$(dirname "$0")/.."

if [ ! -x configure ] || [ configure.ac -nt configure ]; then
	./autogen.sh
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ]; then
	./configure --with-dovecot=/usr/lib/dovecot \
		--with-pigeonhole=/usr/include/dovecot/sieve --enable-werror
fi
make -j2
make -j2 check TESTS=
