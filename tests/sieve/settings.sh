#!/usr/bin/env bash
# Scenario tests of the sieve_loopguard_* settings: values are read,
# invalid ones warn and fall back to the default, maxima clamp the defaults.
. "$(dirname "$0")/../lib/common.sh"
lg_setup

lg_script defaults.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "vnd.loopguard.looptest", "fileinto"];
if looptest :checks "hops" { fileinto "Hops"; stop; }
if ratelimit { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
for i in $(seq 1 30); do
	lg_message "m$i" "s@example.com" "m$i" "Message-ID: <m$i@t>"
done

# deliver N messages from 1.. and print the outcome of the last
run_n() {
	local n=$1 i
	for i in $(seq 1 "$n"); do
		lg_deliver defaults.sieve "m$i" "$(lg_at "$i")" -f s@example.com
	done
	lg_outcome
}

# warns NAME "SETTING = VALUE" REGEX: an invalid value. Dovecot 2.3 hands
# plugin settings over unchecked: delivering logs a warning matching REGEX
# and goes on with the default. Dovecot 2.4 checks declared settings: the
# configuration is refused with an error naming the setting.
warns() {
	lg_config "  $2"
	lg_deliver defaults.sieve m1 "" -f s@example.com
	if lg_dovecot_24; then
		lg_check_match "$1 (2.4: the config is refused)" \
			"(Fatal|Error): .*${2%% *}" "$LG_OUT"
		lg_check "$1 (2.4: nothing is delivered)" "unknown" \
			"$(lg_outcome)"
	else
		lg_check_match "$1" "[Ww]arning: .*$3" "$LG_OUT"
	fi
}

LG_SCENARIO="settings"
lg_config "  sieve_loopguard_ratelimit_count = 2
  sieve_loopguard_ratelimit_period = 1h"
lg_check "sieve_loopguard_ratelimit_count is the default :count" "Over" \
	"$(run_n 3)"

rm -rf "$LG_DIR/state"/*
if lg_dovecot_24; then
	warns "an invalid count is refused" \
		"sieve_loopguard_ratelimit_count = lots" ""
	warns "a misspelt setting is refused" \
		"sieve_loopguard_ratelimit_cuont = 3" ""
else
	lg_config "  sieve_loopguard_ratelimit_count = lots"
	lg_check "an invalid count falls back to 23: the 23rd passes" \
		"Under" "$(run_n 23)"
	lg_deliver defaults.sieve m24 "$(lg_at 24)" -f s@example.com
	lg_check "the 24th is over" "Over" "$(lg_outcome)"
	lg_check_match "and a warning names the setting" \
		"[Ww]arning: .*sieve_loopguard_ratelimit_count" "$LG_OUT"
fi

rm -rf "$LG_DIR/state"/*
lg_config "  sieve_loopguard_max_count = 3"
lg_check "the default :count is clamped to sieve_loopguard_max_count" \
	"Over" "$(run_n 4)"

rm -rf "$LG_DIR/state"/*
lg_config "  sieve_loopguard_max_count = 0"
lg_check "max_count 0 is no maximum: the default :count 23 stays" "Under" \
	"$(run_n 23)"
lg_deliver defaults.sieve m24 "$(lg_at 24)" -f s@example.com
lg_check "and the 24th is over" "Over" "$(lg_outcome)"

warns "a max_count beyond 100000 warns" \
	"sieve_loopguard_max_count = 200000" \
	"sieve_loopguard_max_count: value 200000 is too large \(maximum 100000\)"

# The values are parsed as Dovecot parses its own settings.
rm -rf "$LG_DIR/state"/*
lg_config "  sieve_loopguard_ratelimit_count = 2
  sieve_loopguard_ratelimit_period = 2 mins
  sieve_loopguard_sync = $(lg_dovecot_24 && echo yes || echo y)"
run_n 2 >/dev/null
lg_deliver defaults.sieve m3 "$(lg_at 3)" -f s@example.com
lg_check "Dovecot's interval syntax is understood" "Over" "$(lg_outcome)"
lg_check "and no setting is refused" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'sieve_loopguard_')"
lg_deliver defaults.sieve m4 "$(lg_at 125)" -f s@example.com
lg_check "the period is 2 minutes" "Under" "$(lg_outcome)"
# A period of 0 would turn every ratelimit without :seconds off.
rm -rf "$LG_DIR/state"/*
if lg_dovecot_24; then
	warns "ratelimit_period 0 is refused" \
		"sieve_loopguard_ratelimit_period = 0" ""
else
	lg_config "  sieve_loopguard_ratelimit_count = 2
  sieve_loopguard_ratelimit_period = 0"
	lg_check "ratelimit_period 0 does not turn the test off" "Over" \
		"$(run_n 3)"
	lg_deliver defaults.sieve m4 "$(lg_at 4)" -f s@example.com
	lg_check_match "and a warning says the default is used" \
		"[Ww]arning: .*sieve_loopguard_ratelimit_period: 0 would turn ratelimit off" \
		"$LG_OUT"
fi
warns "an invalid boolean warns" "sieve_loopguard_sync = maybe" \
	"sieve_loopguard_sync: invalid value 'maybe'"
warns "an invalid on_error warns" "sieve_loopguard_on_error = sometimes" \
	"sieve_loopguard_on_error.*using keep"

hdrs=()
for i in 1 2 3; do hdrs+=("Received: from h$i by h$((i+1))"); done
lg_message hops "r@example.com" "hops" "${hdrs[@]}"
lg_config "  sieve_loopguard_hops = 3"
lg_deliver defaults.sieve hops "" -f r@example.com
lg_check "sieve_loopguard_hops is the default :hops" "Hops" "$(lg_outcome)"
warns "an invalid hops value warns" "sieve_loopguard_hops = -5" \
	"sieve_loopguard_hops"

lg_config "  sieve_loopguard_db = relative/state.lmdb"
lg_deliver defaults.sieve m1 "" -f s@example.com
lg_check_match "a relative path is resolved against the home directory" \
	"Warning: .*loopguard state unavailable.*relative/state.lmdb" "$LG_OUT"
lg_check "the path is in the administrator's log only" 1 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'relative/state.lmdb')"
lg_check "and the message is still filed" "Under" "$(lg_outcome)"

lg_finish
