# Shared helpers for the sieve-test scenario scripts under tests/sieve/.
# Each scenario sources this file, calls lg_setup, runs deliveries with
# lg_deliver and reports with lg_check; lg_finish prints the tally.

: "${LG_BUILDDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
LG_PLUGIN="$LG_BUILDDIR/src/.libs/sieve_loopguard"
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

# Writes the sieve-test config; $1 holds extra plugin {} lines.
lg_config()
{
	cat > "$LG_DIR/dovecot.conf" <<CONF
import_environment = LD_PRELOAD FAKETIME FAKETIME_NO_CACHE TZ
log_path = $LG_DIR/dovecot.log
info_log_path = $LG_DIR/dovecot.log
plugin {
  sieve_loopguard_db = $LG_STATE
  sieve_loopguard_sync = no
$1
}
CONF
	chown "$LG_USER" "$LG_DIR/dovecot.conf" 2>/dev/null || true
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
	local load=(-P "$LG_PLUGIN")
	[ -n "${LG_CONFIG_PLUGIN:-}" ] && load=()
	# libfaketime is loaded by sieve-test only: loaded into runuser (root)
	# it would share its clock through a semaphore the user cannot open.
	LG_OUT=$(cd "$LG_DIR" && runuser -u "$LG_USER" -- "${env[@]}" \
		sieve-test -c "$LG_DIR/dovecot.conf" "${load[@]}" \
		-l "maildir:$LG_DIR/mail" "$@" \
		"$LG_DIR/$script" "$LG_DIR/msgs/$msg" 2>&1)
	LG_RC=$?
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
