#!/bin/sh
# Runs a command as root on a bare Debian (bookworm = 12, trixie = 13) in a
# chroot, the way a newcomer's machine looks: debootstrap minbase plus git,
# and a clone of this repository's committed HEAD in /root/<name>, a
# directory only root may enter. Nothing of this machine is visible inside.
#
#   scripts/debian-chroot.sh SUITE [CMD]     (default CMD: ./scripts/test.sh)
#
# Needs root. The bare system is cached in /var/tmp/sieve-loopguard-SUITE.tar
# after the first call; the chroot itself is made anew every time. Uses the
# Debian mirror this machine's apt is configured with.
set -eu
suite=${1:?usage: debian-chroot.sh bookworm|trixie [CMD]}
cmd=${2:-./scripts/test.sh}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
name=$(basename "$repo")
cache=/var/tmp/sieve-loopguard-$suite.tar

if ! command -v debootstrap >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources \
	2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' \
	/etc/apt/sources.list 2>/dev/null)
: "${mirror:=http://deb.debian.org/debian}"

if [ ! -f "$cache" ]; then
	tmp=$(mktemp -d /var/tmp/sieve-loopguard-bootstrap.XXXXXX)
	echo "debootstrap $suite (cached in $cache) ..." >&2
	if ! debootstrap --variant=minbase --include=git,ca-certificates \
			"$suite" "$tmp" "$mirror" > "$tmp.log" 2>&1; then
		tail -n 20 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		exit 1
	fi
	tar -C "$tmp" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
	rm -rf "$tmp" "$tmp.log"
fi

root=$(mktemp -d /var/tmp/sieve-loopguard-$suite.XXXXXX)
cleanup()
{
	for m in dev sys proc; do
		umount -l "$root/$m" 2>/dev/null || true
	done
	rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tar -C "$root" -xf "$cache"
# mktemp made the directory (and the tarball's root) 0700
chmod 755 "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone -q "$repo" "$root/root/$name"
chmod 700 "$root/root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	sh -c "cd /root/$name && $cmd"
