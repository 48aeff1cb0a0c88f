#!/bin/sh
# Installs the Debian packages sieve-loopguard needs to build, test and
# run its demo, skipping the ones already there. Further package names on
# the command line are installed too (scripts/dashboard-png.sh adds its
# plotting library this way).
#
# Usage: scripts/install-deps.sh [PACKAGE ...]
set -e

packages="dovecot-dev dovecot-core dovecot-sieve dovecot-lmtpd
	dovecot-managesieved
	liblmdb-dev lmdb-utils autoconf automake libtool pkg-config make gcc
	faketime python3 valgrind util-linux $*"

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
