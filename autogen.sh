#!/bin/sh
# Regenerates the build system from configure.ac and the Makefile.am files.
set -e
cd "$(dirname "$0")"
mkdir -p m4
cp /usr/share/aclocal/dovecot.m4 /usr/share/aclocal/dovecot-pigeonhole.m4 m4/ \
	2>/dev/null || true
autoreconf -fi
