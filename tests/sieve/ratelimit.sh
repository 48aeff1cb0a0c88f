#!/usr/bin/env bash
# Scenario tests of ratelimit through sieve-test, with the clock set by
# libfaketime: window, strict counting, lock, noupdate, keys, threads,
# once-per-message, concurrency, clamping, state errors and logging.
. "$(dirname "$0")/../lib/common.sh"
lg_setup

# Each message has its own Message-ID unless the caller gives one.
msg() {
	local name=$1 from=$2
	shift 2
	lg_message "$name" "$from" "Hello $name" "Message-ID: <$name@test>" "$@"
}

lg_script limit.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 3 :seconds 60 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE

LG_SCENARIO="sliding window"
for i in 1 2 3 4 5 6; do msg "w$i" "Sender@Example.COM"; done
out=""
for i in 1 2 3 4; do
	lg_deliver limit.sieve "w$i" "$(lg_at $((i * 10)))" -f sender@example.com
	out="$out $(lg_outcome)"
done
lg_check "3 pass, the 4th within 60s is over" " Under Under Under Over" "$out"
# at t=71 the message of t=10 has left, but t=20,30 and the over-limit one
# of t=40 are still in: strict counting keeps it over
lg_deliver limit.sieve w5 "$(lg_at 71)" -f sender@example.com
lg_check "over-limit messages are counted too" "Over" "$(lg_outcome)"
# at t=131 only the message of t=71 is within the window
lg_deliver limit.sieve w6 "$(lg_at 131)" -f sender@example.com
lg_check "false again once the window has passed" "Under" "$(lg_outcome)"

LG_SCENARIO="failed delivery"
# A delivery that fails after ratelimit counted is not counted: the
# store's transaction commits only when the delivery succeeded.
lg_script limit1.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto", "mailbox"];
if ratelimit :count 1 :seconds 600 { fileinto :create "Over"; stop; }
fileinto :create "Under";
SIEVE
for i in 1 2 3; do msg "fd$i" "failing@example.com"; done
lg_deliver_failing ro-rl limit1.sieve fd1 -f failing@example.com
lg_check_match "a delivery into an unwritable mailbox fails" \
	"failed|error" "$LG_OUT"
lg_deliver limit1.sieve fd2 "" -f failing@example.com -e
lg_check "the failed delivery was not counted" "Under" "$(lg_outcome)"
lg_deliver limit1.sieve fd3 "" -f failing@example.com -e
lg_check "a delivery that succeeded was" "Over" "$(lg_outcome)"

LG_SCENARIO="count 0"
lg_script off.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 0 :key "off" { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
out=""
for i in 1 2 3; do
	msg "z$i" "z@example.com"
	lg_deliver off.sieve "z$i" "$(lg_at 1)"
	out="$out $(lg_outcome)"
done
lg_check ":count 0 is always false" " Under Under Under" "$out"

LG_SCENARIO="lock"
lg_script lock.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 2 :seconds 10 :lock 300 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
out=""
for i in 1 2 3; do
	msg "l$i" "locked@example.com"
	lg_deliver lock.sieve "l$i" "$(lg_at $i)" -f locked@example.com
	out="$out $(lg_outcome)"
done
lg_check "the 3rd exceeds and locks" " Under Under Over" "$out"
msg l4 "locked@example.com"
lg_deliver lock.sieve l4 "$(lg_at 200)" -f locked@example.com
lg_check "still locked 200s later at a low rate" "Over" "$(lg_outcome)"
msg l5 "locked@example.com"
lg_deliver lock.sieve l5 "$(lg_at 304)" -f locked@example.com
lg_check "released after the lock" "Under" "$(lg_outcome)"

LG_SCENARIO="noupdate"
lg_script noupdate.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 2 :seconds 60 :noupdate { fileinto "Would"; stop; }
fileinto "Fine";
SIEVE
for i in 1 2 3 4 5; do msg "n$i" "peek@example.com"; done
lg_deliver noupdate.sieve n1 "$(lg_at 1)" -f peek@example.com
lg_deliver noupdate.sieve n2 "$(lg_at 2)" -f peek@example.com
lg_deliver noupdate.sieve n3 "$(lg_at 3)" -f peek@example.com
lg_check "noupdate records nothing" "Fine" "$(lg_outcome)"
lg_deliver limit.sieve n1 "$(lg_at 4)" -f peek@example.com
lg_deliver limit.sieve n2 "$(lg_at 5)" -f peek@example.com
lg_deliver noupdate.sieve n4 "$(lg_at 6)" -f peek@example.com
lg_check "true when this message would exceed" "Would" "$(lg_outcome)"

LG_SCENARIO="keys"
lg_script handles.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :handle "a" :count 1 :seconds 60 { fileinto "A-over"; stop; }
if ratelimit :handle "b" :count 2 :seconds 60 { fileinto "B-over"; stop; }
fileinto "Under";
SIEVE
msg h1 "h@example.com"; msg h2 "h@example.com"
lg_deliver handles.sieve h1 "$(lg_at 1)" -f h@example.com
lg_deliver handles.sieve h2 "$(lg_at 2)" -f h@example.com
lg_check ":handle keeps counters apart" "A-over" "$(lg_outcome)"

lg_script varkey.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto", "variables"];
if header :matches "X-Ticket" "*" { set "ticket" "${1}"; }
if ratelimit :key "ticket-${ticket}" :count 1 :seconds 60 {
	fileinto "Over"; stop;
}
fileinto "Under";
SIEVE
msg k1 "a1@example.com" "X-Ticket: 42"
msg k2 "a2@example.com" "X-Ticket: 42"
msg k3 "a3@example.com" "X-Ticket: 43"
lg_deliver varkey.sieve k1 "$(lg_at 1)" -f a1@example.com
lg_deliver varkey.sieve k2 "$(lg_at 2)" -f a2@example.com
lg_check ":key expands variables (same ticket)" "Over" "$(lg_outcome)"
lg_deliver varkey.sieve k3 "$(lg_at 3)" -f a3@example.com
lg_check ":key expands variables (other ticket)" "Under" "$(lg_outcome)"

lg_script onekey.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 1 :seconds 60 :handle "default" { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
msg d1 "someone@else.example" ; msg d2 "another@else.example"
lg_deliver onekey.sieve d1 "$(lg_at 1)" -f Robot@Example.ORG
lg_deliver onekey.sieve d2 "$(lg_at 2)" -f robot@example.org
lg_check "default key: envelope sender, lower-cased" "Over" "$(lg_outcome)"
msg d3 "Robot@Example.ORG"
lg_deliver onekey.sieve d3 "$(lg_at 3)" -f other@example.org
lg_check "default key ignores From when there is a sender" "Under" \
	"$(lg_outcome)"

LG_SCENARIO="thread"
lg_script thread.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :thread :count 1 :seconds 7200 { fileinto "Flood"; stop; }
fileinto "Ok";
SIEVE
# References root
lg_message r1 "t@example.com" "Re: printer" "Message-ID: <r1@t>" \
	"References: <root-a@t> <mid@t>" "In-Reply-To: <mid@t>"
lg_message r2 "t@example.com" "Re: printer" "Message-ID: <r2@t>" \
	"References: <root-a@t> <r1@t>" "In-Reply-To: <other@t>"
lg_message r3 "t@example.com" "Re: printer" "Message-ID: <r3@t>" \
	"References: <root-b@t>"
lg_deliver thread.sieve r1 "$(lg_at 1)" -f t@example.com
lg_deliver thread.sieve r2 "$(lg_at 2)" -f t@example.com
lg_check "same References root is one thread" "Flood" "$(lg_outcome)"
lg_deliver thread.sieve r3 "$(lg_at 3)" -f t@example.com
lg_check "another References root is another thread" "Ok" "$(lg_outcome)"
# In-Reply-To when there are no References
lg_message i1 "t@example.com" "x" "Message-ID: <i1@t>" "In-Reply-To: <p@t>"
lg_message i2 "t@example.com" "y" "Message-ID: <i2@t>" "In-Reply-To: <p@t>"
lg_deliver thread.sieve i1 "$(lg_at 4)" -f t@example.com
lg_deliver thread.sieve i2 "$(lg_at 5)" -f t@example.com
lg_check "In-Reply-To identifies the thread" "Flood" "$(lg_outcome)"
# own Message-ID: a retransmission with a new body is the same thread
lg_message o1 "t@example.com" "z1" "Message-ID: <own@t>"
lg_message o2 "t@example.com" "z2" "Message-ID: <own2@t>"
lg_deliver thread.sieve o1 "$(lg_at 6)" -f t@example.com
lg_deliver thread.sieve o2 "$(lg_at 7)" -f t@example.com
lg_check "a new Message-ID is a new thread" "Ok" "$(lg_outcome)"
# Subject when there are no message-ids at all
lg_message s1 "t@example.com" "Printer broken"
lg_message s2 "t@example.com" "Re: AW: printer   broken"
lg_deliver thread.sieve s1 "$(lg_at 8)" -f t@example.com
lg_deliver thread.sieve s2 "$(lg_at 9)" -f t@example.com
lg_check "normalized Subject identifies the thread" "Flood" "$(lg_outcome)"

LG_SCENARIO="once per message"
lg_script twice.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 1 :seconds 60 :handle "twice" { fileinto "First-over"; stop; }
if ratelimit :count 1 :seconds 60 :handle "twice" { fileinto "Second-over"; stop; }
fileinto "Under";
SIEVE
msg o1 "once@example.com"; msg o2 "once@example.com"
lg_deliver twice.sieve o1 "$(lg_at 1)" -f once@example.com
lg_check "twice in one script counts once" "Under" "$(lg_outcome)"
lg_deliver twice.sieve o1 "$(lg_at 2)" -f once@example.com
lg_check "a second delivery counts once" "Under" "$(lg_outcome)"
lg_deliver twice.sieve o2 "$(lg_at 3)" -f once@example.com
lg_check "another message is counted" "First-over" "$(lg_outcome)"
lg_deliver twice.sieve o2 "$(lg_at 4)" -f once@example.com
lg_check "and gets the same answer again" "First-over" "$(lg_outcome)"

LG_SCENARIO="reused Message-ID"
lg_script reuse.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 3 :seconds 60 :lock 900 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
# A sender chooses its Message-ID: ten different messages under one ID
# are ten messages.
out=""
for i in $(seq 1 10); do
	lg_message "ru$i" "reuse@example.com" "Reuse $i" "Message-ID: <same@test>"
	lg_deliver reuse.sieve "ru$i" "$(lg_at $i)" -f reuse@example.com
	out="$out $(lg_outcome)"
done
lg_check "one Message-ID on different messages does not pass them all" \
	" Under Under Under Over Over Over Over Over Over Over" "$out"
# While the key is locked, a message that passed before the lock is over
# too, delivered again or not.
lg_deliver reuse.sieve ru1 "$(lg_at 30)" -f reuse@example.com
lg_check "while locked, a message counted before is over" "Over" \
	"$(lg_outcome)"
lg_deliver reuse.sieve ru2 "$(lg_at 800)" -f reuse@example.com
lg_check "still over at a low rate within the lock" "Over" "$(lg_outcome)"

LG_SCENARIO="clock jump"
lg_script jump.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 3 :seconds 60 :lock 900 { discard; stop; }
fileinto "Under";
SIEVE
ten_years=$((10 * 365 * 86400))
out=""
for i in 1 2 3 4; do
	msg "cj$i" "jump@example.com"
	lg_deliver jump.sieve "cj$i" "$(lg_at $((ten_years + i)))" \
		-f jump@example.com
	out="$out $(lg_outcome)"
done
lg_check "with the clock 10 years ahead the 4th is discarded" \
	" Under Under Under discard" "$out"
# the same for another sender that then falls silent
for i in 1 2 3 4; do
	msg "cs$i" "silent@example.com"
	lg_deliver jump.sieve "cs$i" "$(lg_at $((ten_years + 10 + i)))" \
		-f silent@example.com
done
# the clock is corrected
msg cj5 "jump@example.com"
lg_deliver jump.sieve cj5 "$(lg_at 100)" -f jump@example.com
lg_check "after the clock is corrected the sender is not locked out" \
	"Under" "$(lg_outcome)"
out=""
for i in 6 7 8; do
	msg "cj$i" "jump@example.com"
	lg_deliver jump.sieve "cj$i" "$(lg_at $((95 + i)))" -f jump@example.com
	out="$out $(lg_outcome)"
done
lg_check "the count starts afresh: the stamps from the future are gone" \
	" Under Under discard" "$out"
# ordinary traffic sweeps the silent sender's record away
for i in $(seq 1 5); do
	msg "cn$i" "normal$i@example.com"
	lg_deliver jump.sieve "cn$i" "$(lg_at $((100 + i)))" \
		-f "normal$i@example.com"
done
lg_check "a record from the future is swept like an expired one" 0 \
	"$(mdb_dump -p -n -s records "$LG_STATE" | grep -c 'silent@example.com')"
# a clock before 1970 makes the test false, never true for everyone.
# Dovecot 2.4 itself stops at such a clock before any script runs (its
# index code asserts a positive time), so only 2.3 gets this far; the
# unit tests cover the window's side on both.
if ! lg_dovecot_24; then
	msg cb1 "jump@example.com"
	lg_deliver jump.sieve cb1 "1969-12-31 23:00:00" -f jump@example.com
	lg_check "a clock before 1970: false" "Under" "$(lg_outcome)"
	lg_check_match "a clock before 1970: a warning" \
		"warning: ratelimit test: no valid time, test is false" \
		"$LG_OUT"
fi

LG_SCENARIO="concurrency"
lg_script conc.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 50 :seconds 3600 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
for i in $(seq 1 100); do msg "c$i" "busy@example.com"; done
export -f lg_deliver lg_outcome lg_mail_opt lg_dovecot_24
export LG_DIR LG_USER LG_PLUGIN LG_LOAD LG_FAKETIME_LIB
seq 1 100 | xargs -P 8 -I{} bash -c \
	'lg_deliver conc.sieve c{} "" -f busy@example.com; lg_outcome' \
	> "$LG_DIR/conc.out"
lg_check "100 messages, 8 at a time: 50 under" 50 \
	"$(grep -c '^Under$' "$LG_DIR/conc.out")"
lg_check "100 messages, 8 at a time: 50 over" 50 \
	"$(grep -c '^Over$' "$LG_DIR/conc.out")"

LG_SCENARIO="arguments"
lg_script clamp.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 5000 :seconds 99999999 :lock 99999999 { fileinto "Over"; }
SIEVE
msg a1 "x@example.com"
lg_deliver clamp.sieve a1 ""
lg_check_match ":count is clamped with a warning" \
	"line 2: warning: the :count value 5000 .*maximum; using 1000" "$LG_OUT"
lg_check_match ":seconds is clamped with a warning" \
	"line 2: warning: the :seconds value 99999999 .*using 604800" "$LG_OUT"
lg_check_match ":lock is clamped with a warning" \
	"line 2: warning: the :lock value 99999999 .*using 604800" "$LG_OUT"
# A binary compiled under other settings is run as it is: the maxima are
# enforced at run time too.
lg_script precompiled.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 10 :seconds 60 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
lg_config "  sieve_loopguard_max_count = 0"
(cd "$LG_DIR" && runuser -u "$LG_USER" -- sievec -c "$LG_DIR/dovecot.conf" \
	$LG_LOAD precompiled.sieve) >/dev/null 2>&1
lg_config "  sieve_loopguard_max_count = 3"
out=""
for i in 1 2 3 4; do
	msg "p$i" "pre@example.com"
	lg_deliver precompiled.sieve "p$i" "$(lg_at $((i + 1000)))" \
		-f pre@example.com
	out="$out $(lg_outcome)"
done
lg_check "the binary was run, not compiled again" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'warning: the :count value')"
lg_check "a precompiled :count is clamped to the maximum at run time" \
	" Under Under Under Over" "$out"
lg_config ""

lg_script badtype.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count "ten" { fileinto "Over"; }
SIEVE
lg_deliver badtype.sieve a1 ""
lg_check_match "a string for :count is a compile error" \
	"line 2: error: the :count tag .* requires a number" "$LG_OUT"
lg_script zeroseconds.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 1 :seconds 0 { fileinto "Over"; }
SIEVE
lg_deliver zeroseconds.sieve a1 ""
lg_check_match ":seconds 0 is a compile error that points to :count 0" \
	"line 2: error: the :seconds value of the ratelimit test must be at least 1 .*use :count 0 to turn the test off" \
	"$LG_OUT"
lg_script badkey.sieve <<'SIEVE'
require "vnd.loopguard.ratelimit";
if ratelimit :key 5 { keep; }
SIEVE
lg_deliver badkey.sieve a1 ""
lg_check_match "a number for :key is a compile error" \
	"line 2: error: the :key tag .* requires a string" "$LG_OUT"
lg_script badtag.sieve <<'SIEVE'
require "vnd.loopguard.ratelimit";
if ratelimit :bogus { keep; }
SIEVE
lg_deliver badtag.sieve a1 ""
lg_check_match "an unknown tag is a compile error" \
	"line 2: error: unknown tagged argument ':bogus'" "$LG_OUT"

LG_SCENARIO="logging"
lg_script logged.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :handle "logged" :count 1 :seconds 60 :lock 600 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
msg g1 "log@example.com"; msg g2 "log@example.com"
lg_deliver logged.sieve g1 "$(lg_at 1)" -f log@example.com
lg_check "no log line while under the limit" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'loopguard: ratelimit fired')"
lg_deliver logged.sieve g2 "$(lg_at 2)" -f log@example.com
lg_check "one log line when true" 1 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'loopguard: ratelimit fired')"
lg_check_match "the line names user, handle, key, count, window, lock, id" \
	"ratelimit fired: user=$LG_USER, handle=logged, key=log@example.com, .*message-id=<g2@test>, count=2, window=60s, locked-until=2027-03-01 10:10:02" \
	"$LG_OUT"
logdump=$(mdb_dump -p -n -s log "$LG_STATE" 2>&1)
lg_check_match "the entry is kept in the user's log" "g2@test" "$logdump"
# the handle comes from the script: logged shortened, on one line
long=$(printf 'h%.0s' $(seq 1 250))
lg_script longhandle.sieve <<SIEVE
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :handle "$long
x" :count 1 :seconds 60 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
msg g3 "log@example.com"; msg g4 "log@example.com"
lg_deliver longhandle.sieve g3 "$(lg_at 3)" -f log@example.com
lg_deliver longhandle.sieve g4 "$(lg_at 4)" -f log@example.com
lg_check "a handle is logged sanitized: shortened, on one line" 1 \
	"$(printf '%s\n' "$LG_OUT" | grep -Ec 'ratelimit fired: user=[^,]*, handle=h{150,200}\.\.\. #[0-9a-f]{16}, key=log@example.com, ')"

LG_SCENARIO="state errors"
lg_script keep.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :count 1 :seconds 60 { fileinto "Over"; }
fileinto "After";
SIEVE
msg e1 "err@example.com"
# a directory where the data file should be cannot be opened as a store
lg_config "  sieve_loopguard_db = $LG_DIR/notafile"
mkdir -p "$LG_DIR/notafile"
lg_deliver keep.sieve e1 ""
lg_check "keep: the test is false and the script goes on" "After" \
	"$(lg_outcome)"
lg_check_match "keep: a warning is logged" \
	"warning: ratelimit test: loopguard state unavailable" "$LG_OUT"
lg_check "keep: the script's warning names neither path nor error" 1 \
	"$(printf '%s\n' "$LG_OUT" | grep -c '^warning: ratelimit test: loopguard state unavailable, test is false\.$')"
lg_check_match "keep: the administrator's log has the path and the error" \
	"Warning: .*ratelimit test: loopguard state unavailable.*$LG_DIR/notafile.*Is a directory" \
	"$LG_OUT"
lg_check "keep: the path appears in the administrator's log only" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep notafile | grep -vc '^sieve-test[^:]*: Warning: ')"
# a corrupted data file
printf 'this is not an lmdb file %.0s' $(seq 1 400) > "$LG_DIR/broken"
chown "$LG_USER" "$LG_DIR/broken"
lg_config "  sieve_loopguard_db = $LG_DIR/broken"
lg_deliver keep.sieve e1 ""
lg_check "keep: a corrupted store gives false, fileinto still files" \
	"After" "$(lg_outcome)"
lg_config "  sieve_loopguard_db = $LG_DIR/notafile
  sieve_loopguard_on_error = tempfail"
lg_deliver keep.sieve e1 "" -e
lg_check_match "tempfail: the delivery is deferred" \
	"temporary failure|TEMPFAIL|tempfail" "$LG_OUT"
lg_check "tempfail: nothing is filed" 0 \
	"$(find "$LG_DIR/mail" -path '*After*' -type f | wc -l)"
# A store full of live records stays full: deferring would defer for ever,
# so a full store is handled like keep whatever on_error says.
{
	echo 'require ["vnd.loopguard.ratelimit", "fileinto"];'
	long=$(printf 'k%.0s' $(seq 1 400))
	for i in $(seq 1 50); do
		echo "if ratelimit :key \"$long$i\" :count 5 :seconds 86400 { fileinto \"Over\"; stop; }"
	done
	echo 'fileinto "After";'
} | lg_script full.sieve
rm -f "$LG_DIR/full.lmdb" "$LG_DIR/full.lmdb-lock"
lg_config "  sieve_loopguard_db = $LG_DIR/full.lmdb
  sieve_loopguard_db_max_size = 128k
  sieve_loopguard_on_error = tempfail"
lg_deliver full.sieve e1 ""
lg_check "full store: not deferred, the script goes on" "After" \
	"$(lg_outcome)"
lg_check_match "full store: the administrator is told" \
	"Warning: .*ratelimit test: loopguard state is full" "$LG_OUT"
# The delivery's one commit needs pages of its own: the store is full
# while there is still room for it, so what fitted is recorded.
lg_check "full store: the delivery's commit succeeds" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'failed to record')"

# A full disk: the store lives on a tiny file system that is already full.
# The delivery must not fail for it: the test is false and the script goes
# on (default on_error = keep).
lg_config "  sieve_loopguard_db = $LG_DIR/tiny/state.lmdb"
mkdir -p "$LG_DIR/tiny"
LG_OUT=$(cd "$LG_DIR" && lg_private_mounts sh -c '
	mount -t tmpfs -o size=64k,mode=0777 tmpfs tiny &&
	dd if=/dev/zero of=tiny/filler bs=4k count=64 2>/dev/null
	runuser -u "$0" -- sieve-test -c dovecot.conf $1 $2 \
		keep.sieve msgs/e1
	umount tiny' \
	"$LG_USER" "$LG_LOAD" "$(lg_mail_opt "$LG_DIR/mail")" 2>&1)
lg_check "full disk: the script goes on and files the message" "After" \
	"$(lg_outcome)"
lg_check_match "full disk: a warning tells the user" \
	"warning: ratelimit test: loopguard state unavailable" "$LG_OUT"
# The disk fills up after the store was made: new messages need new pages.
msg e2 "err@example.com"; msg e3 "err@example.com"
LG_OUT=$(cd "$LG_DIR" && lg_private_mounts sh -c '
	mount -t tmpfs -o size=2m,mode=0777 tmpfs tiny &&
	runuser -u "$0" -- sieve-test -c dovecot.conf $1 $2 \
		keep.sieve msgs/e1 >/dev/null 2>&1 &&
	dd if=/dev/zero of=tiny/filler bs=4k 2>/dev/null
	for m in e2 e3; do
		runuser -u "$0" -- sieve-test -c dovecot.conf $1 $2 \
			keep.sieve msgs/$m
	done
	umount tiny' \
	"$LG_USER" "$LG_LOAD" "$(lg_mail_opt "$LG_DIR/mail")" 2>&1)
lg_check "disk full later: no crash, both messages are filed" 2 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'store message in folder: After')"
lg_check "disk full later: the store really ran out of space" 2 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'No space left on device')"
lg_check "disk full later: nothing crashed" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -ci 'bus error\|segmentation\|panic')"

LG_SCENARIO="expiry"
lg_config ""
lg_script expire.sieve <<'SIEVE'
require ["vnd.loopguard.ratelimit", "fileinto"];
if ratelimit :handle "exp" :count 5 :seconds 60 { fileinto "Over"; stop; }
fileinto "Under";
SIEVE
for i in $(seq 1 30); do msg "x$i" "exp$i@example.com"; done
for i in $(seq 1 30); do
	lg_deliver expire.sieve "x$i" "$(lg_at 1)" -f "exp$i@example.com"
done
before=$(mdb_dump -p -n -s records "$LG_STATE" | grep -c 'exp')
# two hours later the windows are long over; ordinary traffic sweeps them
for i in $(seq 1 10); do
	msg "y$i" "later$i@example.com"
	lg_deliver expire.sieve "y$i" "$(lg_at 7200)" -f "later$i@example.com"
done
after=$(mdb_dump -p -n -s records "$LG_STATE" | grep -c 'exp[0-9]')
lg_check "30 keys were stored" 1 "$([ "$before" -ge 30 ] && echo 1 || echo 0)"
lg_check "expired keys disappear on their own" 0 "$after"

lg_finish
