# Shared helpers for the sieve-test scenario scripts under tests/sieve/.
# Each scenario sources this file, calls lg_setup, runs deliveries with
# lg_deliver and reports with lg_check; lg_finish prints the tally.

: "${LG_BUILDDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
. "$(dirname "${BASH_SOURCE[0]}")/stage.sh"
# Run on its own, a scenario stages the build first (see stage.sh).
if [ -z "${LG_STAGE:-}" ]; then
	lg_stage_exec "$LG_BUILDDIR" bash "$0" "$@"
	exit
fi
LG_PLUGIN="$LG_STAGE/sieve/sieve_loopguard"
# How sieve-test loads the plugin: Dovecot 2.4 enables extensions from the
# config before sieve-test's -P loads a plugin, so there the config does.
if lg_dovecot_24; then
	LG_LOAD=""
else
	LG_LOAD="-P $LG_PLUGIN"
fi
LG_FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1)
LG_USER=${LG_USER:-nobody}
lg_passed=0
lg_failed=0

# Creates a scratch directory owned by the unprivileged test user, with a
# config that loads the plugin and keeps state in $LG_DIR/state.
lg_setup()
{
	LG_DIR=$(mktemp -d /tmp/loopguard-test.XXXXXX)
	chmod 0755 "$LG_DIR"
	mkdir -p "$LG_DIR/mail" "$LG_DIR/msgs"
	LG_STATE="$LG_DIR/state/loopguard.lmdb"
	mkdir -p "$LG_DIR/state"
	lg_config ""
	chown -R "$LG_USER" "$LG_DIR"
	trap 'rm -rf "$LG_DIR"' EXIT
}

# Writes the sieve-test config; $1 holds extra settings, written the same
# for both Dovecot versions: on 2.3 they go into plugin { }.
lg_config()
{
	if lg_dovecot_24; then
		cat > "$LG_DIR/dovecot.conf" <<CONF
dovecot_config_version = 2.4.1
dovecot_storage_version = 2.4.1
import_environment {
  LD_PRELOAD = %{env:LD_PRELOAD}
  FAKETIME = %{env:FAKETIME}
  FAKETIME_NO_CACHE = %{env:FAKETIME_NO_CACHE}
  TZ = %{env:TZ}
}
log_path = $LG_DIR/dovecot.log
info_log_path = $LG_DIR/dovecot.log
mail_driver = maildir
mail_path = $LG_DIR/mail
sieve_plugin_dir = $LG_STAGE/sieve
sieve_plugins = sieve_loopguard
sieve_extensions {
  vnd.loopguard.looptest = yes
  vnd.loopguard.ratelimit = yes
}
sieve_loopguard_db = $LG_STATE
sieve_loopguard_sync = no
$1
CONF
	else
		cat > "$LG_DIR/dovecot.conf" <<CONF
import_environment = LD_PRELOAD FAKETIME FAKETIME_NO_CACHE TZ
log_path = $LG_DIR/dovecot.log
info_log_path = $LG_DIR/dovecot.log
plugin {
  sieve_plugin_dir = $LG_STAGE/sieve
  sieve_loopguard_db = $LG_STATE
  sieve_loopguard_sync = no
$1
}
CONF
	fi
	chown "$LG_USER" "$LG_DIR/dovecot.conf" 2>/dev/null || true
}

# The sieve-test options that deliver into the Maildir DIR.
lg_mail_opt()
{
	if lg_dovecot_24; then
		echo "-o mail_path=$1"
	else
		echo "-l maildir:$1"
	fi
}

# A config line that adds (+NAME) or removes (-NAME) a Sieve extension.
lg_extension_setting()
{
	local name=${1#[+-]}
	if ! lg_dovecot_24; then
		echo "sieve_extensions = $1"
	elif [ "${1%"$name"}" = "-" ]; then
		printf 'sieve_extensions {\n  %s = no\n}\n' "$name"
	else
		printf 'sieve_extensions {\n  %s = yes\n}\n' "$name"
	fi
}

# lg_private_mounts CMD...: runs CMD in a mount namespace of its own, for
# the mounts it makes. A chroot whose root is no mount point allows only
# one that keeps the propagation of the mounts it inherits: CMD must then
# unmount what it mounted.
lg_private_mounts()
{
	if unshare -m true 2>/dev/null; then
		unshare -m "$@"
	else
		unshare -m --propagation unchanged "$@"
	fi
}

# The scenarios' clock: lg_at SECONDS prints the libfaketime time SECONDS
# after a fixed start, which lies ahead of any real clock the tests meet.
LG_T0="2027-03-01 10:00:00"
lg_at()
{
	date -u -d "$LG_T0 UTC + $1 seconds" '+%Y-%m-%d %H:%M:%S'
}

# Writes a message file: lg_message NAME FROM SUBJECT [EXTRA-HEADER...]
# The body names the file, so every message has distinct content.
lg_message()
{
	local name=$1 from=$2 subject=$3
	shift 3
	{
		printf 'From: %s\n' "$from"
		printf 'To: user@example.com\n'
		printf 'Subject: %s\n' "$subject"
		printf 'Date: Mon, 23 Nov 2026 10:00:00 +0000\n'
		for h in "$@"; do printf '%s\n' "$h"; done
		printf '\nThis is message %s.\n' "$name"
	} > "$LG_DIR/msgs/$name"
	chown "$LG_USER" "$LG_DIR/msgs/$name"
}

# Runs sieve-test: lg_deliver SCRIPT MESSAGE [AT-TIME] [sieve-test options]
# AT-TIME is "" or a libfaketime absolute time ("2026-11-23 12:00:00").
# Output goes to $LG_OUT; the exit code to $LG_RC.
lg_deliver()
{
	local script=$1 msg=$2 at=$3
	shift 3
	local env=()
	if [ -n "$at" ]; then
		env=(env LD_PRELOAD="$LG_FAKETIME_LIB" FAKETIME="@$at"
		     FAKETIME_NO_CACHE=1)
	fi
	# With LG_CONFIG_PLUGIN set, the config's sieve_plugins loads the
	# plugin, as in a real installation; otherwise sieve-test -P does.
	local load=($LG_LOAD)
	[ -n "${LG_CONFIG_PLUGIN:-}" ] && load=()
	# libfaketime is loaded by sieve-test only: loaded into runuser (root)
	# it would share its clock through a semaphore the user cannot open.
	LG_OUT=$(cd "$LG_DIR" && runuser -u "$LG_USER" -- "${env[@]}" \
		sieve-test -c "$LG_DIR/dovecot.conf" "${load[@]}" \
		$(lg_mail_opt "$LG_DIR/mail") "$@" \
		"$LG_DIR/$script" "$LG_DIR/msgs/$msg" 2>&1)
	LG_RC=$?
}

# Runs sieve-test -e into a mailbox under a directory the user cannot
# write, so that the delivery fails after the script ran:
# lg_deliver_failing DIR SCRIPT MESSAGE [sieve-test options]
# Output goes to $LG_OUT.
lg_deliver_failing()
{
	local dir=$1 script=$2 msg=$3
	shift 3
	mkdir -p "$LG_DIR/$dir"
	chown "$LG_USER" "$LG_DIR/$dir"
	chmod 0500 "$LG_DIR/$dir"
	LG_OUT=$(cd "$LG_DIR" && runuser -u "$LG_USER" -- sieve-test \
		-c "$LG_DIR/dovecot.conf" $LG_LOAD -e "$@" \
		$(lg_mail_opt "$LG_DIR/$dir/mail") \
		"$LG_DIR/$script" "$LG_DIR/msgs/$msg" 2>&1)
}

# Writes a Sieve script into the scratch directory.
lg_script()
{
	cat > "$LG_DIR/$1"
	chown "$LG_USER" "$LG_DIR/$1"
}

# Which folder did the last delivery file into? Prints "discard" when the
# message was discarded, the folder name otherwise.
lg_outcome()
{
	if printf '%s\n' "$LG_OUT" | grep -q 'store message in folder: '; then
		printf '%s\n' "$LG_OUT" |
			sed -n 's/.*store message in folder: \(.*\)$/\1/p' |
			head -n 1
	elif printf '%s\n' "$LG_OUT" | grep -q 'fileinto action: stored mail'; then
		# executed with -e
		printf '%s\n' "$LG_OUT" |
			sed -n "s/.*fileinto action: stored mail into mailbox '\([^']*\)'.*/\1/p" |
			head -n 1
	elif printf '%s\n' "$LG_OUT" | grep -qi 'discard'; then
		echo discard
	else
		echo "unknown"
	fi
}

# lg_check NAME EXPECTED ACTUAL
lg_check()
{
	if [ "$2" = "$3" ]; then
		echo "PASS: $LG_SCENARIO: $1"
		lg_passed=$((lg_passed + 1))
	else
		echo "FAIL: $LG_SCENARIO: $1: expected '$2', got '$3'"
		lg_failed=$((lg_failed + 1))
		if [ -n "${LG_VERBOSE:-}" ]; then
			printf '%s\n' "$LG_OUT" | sed 's/^/    | /'
		fi
	fi
}

# lg_check_match NAME REGEX TEXT
lg_check_match()
{
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then
		echo "PASS: $LG_SCENARIO: $1"
		lg_passed=$((lg_passed + 1))
	else
		echo "FAIL: $LG_SCENARIO: $1: no match for /$2/ in:"
		printf '%s\n' "$3" | sed 's/^/    | /' | head -n 20
		lg_failed=$((lg_failed + 1))
	fi
}

lg_finish()
{
	[ "$lg_failed" -eq 0 ]
}
