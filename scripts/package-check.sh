#!/bin/bash
# package-check.sh bookworm|trixie
#
# Proves the Debian package on bare machines of one release (bookworm =
# Debian 12 with Dovecot 2.3, trixie = Debian 13 with Dovecot 2.4), each a
# debootstrap chroot that sees none of the software installed here:
#
#   1. builds dovecot-sieve-loopguard from the committed HEAD with
#      dpkg-buildpackage in a bare chroot, and runs lintian on it;
#   2. installs the .deb with apt-get into a second bare chroot;
#   3. enables the plugin as README says (uncommenting lines of
#      /etc/dovecot/conf.d/90-sieve-loopguard.conf);
#   4. starts that Dovecot, the system configuration with a local.conf that
#      keeps it on 127.0.0.1 and a free port;
#   5. delivers a storm over LMTP to a user whose script allows 5 messages
#      per sender, and checks it stopped and `doveadm loopguard list` shows
#      the sender;
#   6. removes the package and checks Dovecot still starts and delivers;
#   7. installs it again (the configuration comes back) and purges it.
#
# Ends with "package-check SUITE: passed" and exit 0. The .deb, the build
# log and lintian's report stay in /var/tmp/sieve-loopguard-pkg-SUITE.*/out;
# the chroots are removed unless the check fails or KEEP_CHROOTS=1.
#
# Needs root, debootstrap and the Debian mirror that this machine's apt
# uses. The bare tree is cached in /var/tmp/sieve-loopguard-debootstrap-
# SUITE.tar. Dovecot is started as a plain process (never as a service:
# a policy-rc.d refuses every service start in the chroots) and stopped by
# its master.pid. Only 127.0.0.1 is used.
set -euo pipefail

suite=${1:-}
case "$suite" in
bookworm | trixie) ;;
*)
	echo "usage: $0 bookworm|trixie" >&2
	exit 64 ;;
esac
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 1; }
command -v debootstrap >/dev/null ||
	{ echo "$0: install debootstrap first" >&2; exit 1; }

repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources \
	2>/dev/null | head -1)
[ -n "$mirror" ] ||
	mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)

pkg=dovecot-sieve-loopguard
conf=/etc/dovecot/conf.d/90-sieve-loopguard.conf
user=lguser
sender=storm@remote.test
storm=30
limit=5

work=$(mktemp -d "/var/tmp/sieve-loopguard-pkg-$suite.XXXXXX")
out=$work/out
mkdir -p "$out"
roots=()
ok=no

step()
{
	echo "== $suite: $*"
}

fail()
{
	echo "FAIL ($suite): $*" >&2
	exit 1
}

cleanup()
{
	local r
	for r in "${roots[@]}"; do
		dovecot_stop "$r" || true
		umount "$r/proc" 2>/dev/null || true
	done
	if [ "$ok" = yes ] && [ "${KEEP_CHROOTS:-0}" != 1 ]; then
		for r in "${roots[@]}"; do
			rm -rf "$r"
		done
	elif [ ${#roots[@]} -gt 0 ]; then
		echo "chroots kept: ${roots[*]}" >&2
	fi
}
trap cleanup EXIT

# The bare system, debootstrapped once.
base=/var/tmp/sieve-loopguard-debootstrap-$suite.tar
if [ ! -f "$base" ]; then
	tmp=$(mktemp -d /var/tmp/sieve-loopguard-debootstrap.XXXXXX)
	step "debootstrap (once; cached in $base)"
	debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" \
		> "$tmp/log" 2>&1 || { tail -20 "$tmp/log" >&2; exit 1; }
	tar -C "$tmp/root" -cf "$tmp/root.tar" .
	mv "$tmp/root.tar" "$base"
	rm -rf "$tmp"
fi

# new_root NAME: a fresh bare system in $work/NAME, which cannot start
# services.
new_root()
{
	local r=$work/$1
	mkdir "$r"
	roots+=("$r")
	tar -C "$r" -xf "$base"
	cp /etc/resolv.conf "$r/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
	chmod 755 "$r/usr/sbin/policy-rc.d"
	mount -t proc proc "$r/proc"
}

# in_root ROOT COMMAND: runs the shell COMMAND as root inside ROOT, in
# /root.
in_root()
{
	chroot "$1" /usr/bin/env -i HOME=/root TERM=dumb LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		bash -ec "cd /root; $2"
}

dovecot_stop()
{
	local r=$1 pid i
	pid=$(cat "$r/run/dovecot/master.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}

dovecot_start()
{
	local r=$1 i
	in_root "$r" dovecot || fail "dovecot does not start (see $r/var/log/dovecot.log)"
	for i in $(seq 100); do
		if in_root "$r" "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null
		then
			return 0
		fi
		sleep 0.1
	done
	fail "dovecot does not listen on 127.0.0.1:$port"
}

# stored: how many messages the user's INBOX holds.
stored()
{
	find "$test/home/$user/Maildir/new" "$test/home/$user/Maildir/cur" \
		-type f | wc -l
}

# deliver FIRST LAST: messages FIRST..LAST from $sender over LMTP; each
# must be accepted (250).
deliver()
{
	in_root "$test" "
		rm -rf /root/msgs && mkdir /root/msgs
		for i in \$(seq $1 $2); do
			printf '%s\r\n' 'From: <$sender>' 'To: <$user@localhost>' \
				\"Subject: storm \$i\" \"Message-ID: <storm-\$i@remote.test>\" \
				'Date: Sat, 28 Nov 2026 08:00:00 +0000' '' \"message \$i\" \
				> /root/msgs/\$(printf %03d \$i).eml
		done
		python3 /root/lmtp-send.py --host 127.0.0.1 --port $port \
			--from $sender --to $user /root/msgs" > "$out/lmtp-$1-$2.txt" ||
		fail "LMTP delivery of messages $1-$2 (see $out/lmtp-$1-$2.txt)"
}

###########################################################################
step "1. build the package in a bare chroot"
build=$work/build
new_root build
git -C "$repo" archive --prefix=sieve-loopguard/ HEAD |
	tar -x -C "$build/root"
if ! in_root "$build" '
	apt-get update -q
	apt-get install -y -q --no-install-recommends build-essential lintian
	cd /root/sieve-loopguard
	apt-get build-dep -y -q --no-install-recommends ./
	dpkg-buildpackage -us -uc -b' > "$out/build.log" 2>&1; then
	tail -30 "$out/build.log" >&2
	fail "the package does not build (see $out/build.log)"
fi
cp "$build"/root/*.deb "$build"/root/*.changes "$build"/root/*.buildinfo \
	"$out/"
deb=$(cd "$out" && ls ${pkg}_*.deb)
echo "built $deb"

# What the build leaves in the tree must all be ignored by git.
left=$(cd "$build/root/sieve-loopguard" && find . -type f | sed 's|^\./||' |
	sort | comm -23 - <(git -C "$repo" ls-tree -r --name-only HEAD | sort) |
	git -C "$repo" check-ignore --no-index --verbose --non-matching \
		--stdin | sed -n 's/^::\t//p')
[ -z "$left" ] || fail "the build leaves files git does not ignore:
$left"

in_root "$build" 'cd /root && lintian --fail-on error --display-info \
	--show-overrides *.changes' > "$out/lintian.txt" 2>&1 ||
	{ cat "$out/lintian.txt" >&2; fail "lintian reports errors"; }
echo "lintian: $(grep -c '^E:' "$out/lintian.txt") errors," \
	"$(grep -c '^W:' "$out/lintian.txt") warnings," \
	"$(grep -c '^I:' "$out/lintian.txt") infos (see $out/lintian.txt)"
sed 's/^/  /' "$out/lintian.txt"
umount "$build/proc"

###########################################################################
step "2. apt-get install ./$deb into a bare chroot"
test=$work/test
new_root test
cp "$out/$deb" "$test/root/"
in_root "$test" "apt-get update -q && apt-get install -y -q ./$deb" \
	> "$out/install.log" 2>&1 ||
	{ tail -30 "$out/install.log" >&2; fail "apt-get install ./$deb"; }
in_root "$test" "
	dpkg -L $pkg > /root/files
	grep -q '/modules/sieve/lib90_sieve_loopguard_plugin.so\$' /root/files
	grep -q '/modules/doveadm/lib10_doveadm_loopguard_plugin.so\$' /root/files
	grep -q '/man1/doveadm-loopguard.1.gz\$' /root/files
	grep -q '/examples/discard-loops.sieve\$' /root/files
	grep -q '/extensions/vnd.loopguard.ratelimit.txt' /root/files
	test -f $conf" || fail "files missing from the package"
v24=no
if in_root "$test" '! dovecot --version | grep -q "^2\.[0-3]\."'; then
	v24=yes
	in_root "$test" "grep -q '/modules/settings/libsieve_loopguard_settings.so\$' \
		/root/files" || fail "no settings module on Dovecot 2.4"
fi

# The packaged conf.d file changes nothing.
in_root "$test" "
	doveconf -n > /root/with
	mv $conf /root/aside
	doveconf -n > /root/without
	mv /root/aside $conf
	diff -u /root/without /root/with" ||
	fail "the packaged $conf changes the configuration"

# The test's own tools: LMTP and an LMTP client.
in_root "$test" 'apt-get install -y -q dovecot-lmtpd python3' \
	>> "$out/install.log" 2>&1 || fail "apt-get install dovecot-lmtpd"
cp "$build/root/sieve-loopguard/tests/e2e/lmtp-send.py" "$test/root/"

###########################################################################
step "3. enable the plugin as README says"
if [ $v24 = yes ]; then
	in_root "$test" "sed -i -e '/^#sieve_plugins {/,/^#}/s/^#//' \
		-e '/^#sieve_extensions {/,/^#}/s/^#//' $conf"
else
	in_root "$test" "sed -i -e '/^#plugin {/,/^#}/s/^#//' $conf"
fi
# And one setting, which Dovecot 2.4 knows only from the settings module.
in_root "$test" "sed -i \
	's/^\( *\)#sieve_loopguard_log_size = .*/\1sieve_loopguard_log_size = 500/' \
	$conf"
in_root "$test" "doveconf -n > /root/enabled" ||
	fail "doveconf -n fails with the plugin enabled"
grep -q sieve_loopguard "$test/root/enabled" &&
	grep -q 'sieve_loopguard_log_size = 500' "$test/root/enabled" ||
	fail "doveconf -n does not show the plugin enabled"

###########################################################################
port=$(python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "4. start Dovecot on 127.0.0.1:$port"
if [ $v24 = yes ]; then
	cat > "$test/etc/dovecot/local.conf" <<EOF
# package-check.sh: only on 127.0.0.1, mail in ~/Maildir, Sieve in LMTP
listen = 127.0.0.1
ssl = no
log_path = /var/log/dovecot.log
mail_driver = maildir
mail_path = ~/Maildir
# Debian's 10-mail.conf puts INBOX in /var/mail; "." is maildir's own.
mail_inbox_path = .
# As Debian's 90-sieve.conf proposes (commented out there).
sieve_script personal {
  driver = file
  path = ~/sieve
  active_path = ~/.dovecot.sieve
}
service lmtp {
  inet_listener lmtp {
    listen = 127.0.0.1
    port = $port
  }
}
protocol lmtp {
  mail_plugins {
    sieve = yes
  }
}
EOF
else
	cat > "$test/etc/dovecot/local.conf" <<EOF
# package-check.sh: only on 127.0.0.1, mail in ~/Maildir, Sieve in LMTP
listen = 127.0.0.1
ssl = no
log_path = /var/log/dovecot.log
mail_location = maildir:~/Maildir
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $port
  }
}
protocol lmtp {
  mail_plugins = \$mail_plugins sieve
}
EOF
fi
# A system user whose active script (~/.dovecot.sieve, linked to a script
# in ~/sieve as ManageSieve does it) discards what exceeds 5 messages a
# sender.
in_root "$test" "
	useradd -m $user
	mkdir /home/$user/sieve
	cat > /home/$user/sieve/storm.sieve <<'EOF'
require [\"vnd.loopguard.ratelimit\"];
if ratelimit :count $limit :seconds 3600 { discard; stop; }
EOF
	ln -s sieve/storm.sieve /home/$user/.dovecot.sieve
	chown -R $user: /home/$user"
dovecot_start "$test"

###########################################################################
step "5. deliver $storm messages from $sender"
deliver 1 $storm
n=$(stored)
[ "$n" = $limit ] || fail "$n of $storm messages stored, expected $limit"
echo "stored $n of $storm"
in_root "$test" "doveadm loopguard list -u $user" > "$out/list.txt" 2>&1 ||
	{ cat "$out/list.txt" >&2; fail "doveadm loopguard list"; }
cat "$out/list.txt"
grep -q "$sender" "$out/list.txt" ||
	fail "doveadm loopguard list does not show $sender"
grep -q 'loopguard: ratelimit fired' "$test/var/log/dovecot.log" ||
	fail "no \"ratelimit fired\" in the log"
dovecot_stop "$test"

###########################################################################
step "6. apt-get remove $pkg"
in_root "$test" "apt-get remove -y -q $pkg" > "$out/remove.log" 2>&1 ||
	{ cat "$out/remove.log" >&2; fail "apt-get remove"; }
[ -f "$test$conf.disabled" ] && [ ! -e "$test$conf" ] ||
	fail "the enabled $conf was not set aside as $conf.disabled"
in_root "$test" 'doveconf -n > /dev/null' ||
	fail "doveconf -n fails after the package is removed"
dovecot_start "$test"
# The script needs the plugin's extension, so it no longer compiles:
# Dovecot keeps the message (implicit keep).
deliver 101 101
n=$(stored)
[ "$n" = $((limit + 1)) ] ||
	fail "after removing the package: $n messages stored, expected $((limit + 1))"
dovecot_stop "$test"
echo "Dovecot delivers without the plugin ($n stored)"

###########################################################################
step "7. install again, then purge"
in_root "$test" "apt-get install -y -q ./$deb" >> "$out/install.log" 2>&1 ||
	fail "apt-get install ./$deb again"
[ -f "$test$conf" ] && [ ! -e "$test$conf.disabled" ] ||
	fail "reinstalling did not bring back $conf"
in_root "$test" "doveconf -n" | grep -q 'sieve_loopguard_log_size = 500' ||
	fail "reinstalling did not keep the administrator's $conf"
in_root "$test" "apt-get purge -y -q $pkg" >> "$out/remove.log" 2>&1 ||
	fail "apt-get purge"
[ ! -e "$test$conf" ] && [ ! -e "$test$conf.disabled" ] ||
	fail "purge left $conf behind"
in_root "$test" 'doveconf -n > /dev/null' ||
	fail "doveconf -n fails after the package is purged"

ok=yes
echo "package-check $suite: passed ($out/$deb)"
