#!/bin/sh
# Installs the Debian 12 or 13 packages sieve-loopguard needs to build,
# test and run its demo, skipping the ones already there. Further package names on
# the command line are installed too (scripts/dashboard-png.sh adds its
# plotting library this way).
#
# Usage: scripts/install-deps.sh [PACKAGE ...]
set -e

# Dovecot's mail processes run as unprivileged users: they must be able to
# pass through "/". A system whose root directory only root may enter (as
# a chroot unpacked from a private temporary directory can be) lets no mail
# through at all; give it the mode every Debian system has.
if [ "$(id -u)" = 0 ] && [ "$(stat -c %a /)" != 755 ] &&
		! runuser -u nobody -- test -x /usr 2>/dev/null; then
	echo "/ is mode $(stat -c %a /): making it 755, as on any Debian" \
		"system, so that Dovecot's users can reach anything" >&2
	chmod 755 /
fi

packages="dovecot-dev dovecot-core dovecot-sieve dovecot-lmtpd
	dovecot-managesieved
	liblmdb-dev lmdb-utils autoconf automake libtool pkg-config make gcc
	faketime python3 valgrind util-linux
	libhiredis-dev redis-tools $*"
# The Redis store's tests start redis-servers of their own. redis-tools
# holds the server binary (as redis-check-rdb, which serves when called by
# the name redis-server); the package redis-server would only add that
# name and a system service, which must not run here.
# valgrind needs the C library's symbols to apply its suppressions for the
# dynamic loader; without them every dlopen() is reported as an error.
packages="$packages libc6-dbg"

missing=""
for pkg in $packages; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
			grep -q "install ok installed"; then
		missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "Missing packages:$missing; run as root to install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The packaged Dovecot must not start a system service on this machine.
apt-get install -y -qq --no-install-recommends $missing
