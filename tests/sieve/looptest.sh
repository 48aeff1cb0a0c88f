#!/usr/bin/env bash
# Scenario tests of looptest through sieve-test: defaults, :checks groups,
# :hops, :addresses, :reasons, the stateful duplicate check, logging, dumps
# and compile errors.
. "$(dirname "$0")/../lib/common.sh"
lg_setup

lg_script default.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto", "variables"];
if looptest :reasons "why" { fileinto "Loop-${why}"; stop; }
fileinto "Inbox-${why}";
SIEVE

LG_SCENARIO="default checks"
lg_message person "Alice <alice@example.com>" "Lunch?"
lg_deliver default.sieve person "$(lg_at 1)" -f alice@example.com \
	-r user@example.com
lg_check "a person's message passes" "Inbox-" "$(lg_outcome)"
lg_message bounce "Mail Delivery System <MAILER-DAEMON@mx.example.com>" \
	"Undelivered Mail Returned to Sender" \
	"Auto-Submitted: auto-replied" \
	'Content-Type: multipart/report; report-type=delivery-status; boundary="b"'
lg_deliver default.sieve bounce "$(lg_at 2)" -f MAILER-DAEMON@mx.example.com \
	-r user@example.com
lg_check "a bounce is not dropped by a bare looptest" "Inbox-" \
	"$(lg_outcome)"
lg_message listpost "Bob <bob@example.com>" "[dev] release" \
	"List-Id: <dev.lists.example.com>" "Precedence: list"
lg_deliver default.sieve listpost "$(lg_at 3)" -f dev-bounces@lists.example.com \
	-r user@example.com
lg_check "a list post is not dropped by a bare looptest" "Inbox-" \
	"$(lg_outcome)"
lg_message xloop "Robot <robot@example.net>" "ticket" \
	"X-Loop: user@example.com"
lg_deliver default.sieve xloop "$(lg_at 4)" -f robot@example.net \
	-r user@example.com
lg_check "X-Loop with the user's address is a loop" "Loop-marker" \
	"$(lg_outcome)"
lg_message dlvto "Robot <robot@example.net>" "again" \
	"Delivered-To: user@example.com" "Delivered-To: user@example.com"
lg_deliver default.sieve dlvto "$(lg_at 5)" -f robot@example.net \
	-r user@example.com
lg_check "the user twice in Delivered-To is a loop" "Loop-marker" \
	"$(lg_outcome)"
lg_message redirected "Robot <robot@example.net>" "fwd" \
	"X-Sieve-Redirected-From: USER@example.com"
lg_deliver default.sieve redirected "$(lg_at 6)" -f robot@example.net \
	-r user@example.com
lg_check "X-Sieve-Redirected-From with the user's address is a loop" \
	"Loop-marker" "$(lg_outcome)"
hdrs=()
for i in $(seq 1 30); do
	hdrs+=("Received: from hop$i.example.net by hop$((i+1)).example.net; Mon, 23 Nov 2026 10:00:00 +0000")
done
lg_message hops30 "Robot <robot@example.net>" "far" "${hdrs[@]}"
lg_deliver default.sieve hops30 "$(lg_at 7)" -f robot@example.net \
	-r user@example.com
lg_check "30 Received headers reach the default threshold" "Loop-hops" \
	"$(lg_outcome)"

LG_SCENARIO="tags"
lg_script hops.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto"];
if looptest :checks "hops" :hops 31 { fileinto "Loop"; stop; }
fileinto "Inbox";
SIEVE
lg_deliver hops.sieve hops30 "$(lg_at 8)" -f robot@example.net
lg_check ":hops raises the threshold" "Inbox" "$(lg_outcome)"
lg_script addresses.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto"];
if looptest :checks "marker" :addresses ["help@example.org", "Desk@Example.org"] {
	fileinto "Loop"; stop;
}
fileinto "Inbox";
SIEVE
lg_message xloop2 "Robot <robot@example.net>" "t" "X-Loop: desk@example.org"
lg_deliver addresses.sieve xloop2 "$(lg_at 9)" -f robot@example.net \
	-r user@example.com
lg_check ":addresses adds the user's addresses" "Loop" "$(lg_outcome)"
lg_script auto.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto", "variables"];
if looptest :checks "auto" :reasons "why" { fileinto "Auto-${why}"; stop; }
fileinto "Person";
SIEVE
lg_deliver auto.sieve bounce "$(lg_at 10)" -f MAILER-DAEMON@mx.example.com
lg_check ":reasons lists the fired checks in order" \
	"Auto-auto-submitted bounce system" "$(lg_outcome)"
lg_deliver auto.sieve person "$(lg_at 11)" -f alice@example.com
lg_check "a person's message fires no auto check" "Person" "$(lg_outcome)"
# sieve-test has no null envelope sender: the header must carry these
lg_message oldbounce "MAILER-DAEMON <>" \
	"Returned mail: see transcript for details" "Return-Path: <>"
lg_deliver auto.sieve oldbounce "$(lg_at 13)"
lg_check "a bounce from \"MAILER-DAEMON <>\" is known by From and subject" \
	"Auto-bounce system" "$(lg_outcome)"
lg_message notesooo "Jane Doe <jane.doe@notes.example.com>" \
	"AUTO: Jane Doe is out of the office (returning 19/08/2024)"
lg_deliver auto.sieve notesooo "$(lg_at 14)" -f jane.doe@notes.example.com
lg_check "a Lotus Notes absence notice is an autoreply" "Auto-autoreply" \
	"$(lg_outcome)"
lg_message fwdbounce "Alice <alice@example.com>" \
	"Fwd: Returned mail: see transcript for details"
lg_deliver auto.sieve fwdbounce "$(lg_at 15)" -f alice@example.com
lg_check "a person forwarding a bounce is a person" "Person" "$(lg_outcome)"
lg_script self.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto"];
if looptest :checks ["loop", "auto"] { fileinto "Robot"; stop; }
if looptest :checks "self" { fileinto "Self"; stop; }
fileinto "Inbox";
SIEVE
lg_message selfmail "Desk <desk@example.org>" "note to self"
lg_deliver self.sieve selfmail "$(lg_at 12)" -f desk@example.org \
	-r desk@example.org
lg_check "self is opt-in and fires when named" "Self" "$(lg_outcome)"

LG_SCENARIO="duplicate"
lg_script dup.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto", "mailbox"];
if looptest :checks "duplicate" :seconds 600 { fileinto :create "Dup"; stop; }
if looptest :checks "duplicate" :seconds 600 { fileinto :create "Dup-second"; stop; }
fileinto :create "Inbox";
SIEVE
lg_message d1 "Robot <robot@example.net>" "Same" "Message-ID: <a@x>"
lg_message d2 "Robot <ROBOT@example.net>" "Same" "Message-ID: <b@x>"
sed -i 's/This is message d2./This is message d1./' "$LG_DIR/msgs/d2"
lg_deliver dup.sieve d1 "$(lg_at 100)" -f robot@example.net -e
lg_check "the first sighting is not a duplicate (even when tested twice)" \
	"Inbox" "$(lg_outcome)"
lg_deliver dup.sieve d2 "$(lg_at 200)" -f robot@example.net -e
lg_check "same From/Subject/Date/body with a new Message-ID is one" \
	"Dup" "$(lg_outcome)"
lg_deliver dup.sieve d1 "$(lg_at 700)" -f robot@example.net -e
lg_check "seen again within the period (it restarts on every sighting)" \
	"Dup" "$(lg_outcome)"
lg_deliver dup.sieve d1 "$(lg_at 1601)" -f robot@example.net -e
lg_check "not a duplicate once the period has passed" "Inbox" \
	"$(lg_outcome)"
lg_message d3 "Robot <robot@example.net>" "Same" "Message-ID: <c@x>"
lg_deliver dup.sieve d3 "$(lg_at 1602)" -f robot@example.net -e
lg_check "another body is another message" "Inbox" "$(lg_outcome)"
lg_script dupconc.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "fileinto", "mailbox"];
if looptest :checks "duplicate" { fileinto :create "Dup"; stop; }
fileinto :create "Inbox";
SIEVE
lg_message same "Robot <robot@example.net>" "Concurrent" "Message-ID: <cc@x>"
export -f lg_deliver lg_outcome lg_mail_opt lg_dovecot_24
export LG_DIR LG_USER LG_PLUGIN LG_LOAD LG_FAKETIME_LIB
seq 1 16 | xargs -P 8 -I{} bash -c \
	'lg_deliver dupconc.sieve same "" -f robot@example.net -e; lg_outcome' \
	> "$LG_DIR/dup.out"
# Concurrent deliveries serialize on the store's writer lock for the whole
# delivery, so exactly one copy gets through and every other is caught.
inbox=$(grep -c '^Inbox$' "$LG_DIR/dup.out")
dups=$(grep -c '^Dup$' "$LG_DIR/dup.out")
lg_check "16 concurrent copies: exactly one is delivered" 1 "$inbox"
lg_check "16 concurrent copies: each delivered or caught" 16 \
	"$((inbox + dups))"
lg_deliver dupconc.sieve same "" -f robot@example.net -e
lg_check "after they are done, a further copy is a duplicate" "Dup" \
	"$(lg_outcome)"
lg_check "the store survived the concurrent writers" 0 \
	"$(ls "$LG_STATE".broken 2>/dev/null | wc -l)"

# A delivery that fails after the check must not make its retry a duplicate.
lg_message retry "Robot <robot@example.net>" "Retry me" "Message-ID: <rt@x>"
lg_deliver_failing ro dupconc.sieve retry
lg_check_match "a delivery into an unwritable mailbox fails" \
	"failed|error" "$LG_OUT"
lg_deliver dupconc.sieve retry "" -f robot@example.net -e
lg_check "its retry is not a duplicate" "Inbox" "$(lg_outcome)"
lg_deliver dupconc.sieve retry "" -f robot@example.net -e
lg_check "after a successful delivery, a copy is a duplicate" "Dup" \
	"$(lg_outcome)"

# vnd.dovecot.filter replaces the message mid-script; testing again after
# it must not find this delivery's own sighting.
mkdir -p "$LG_DIR/bin"
printf '#!/bin/sh\ncat\n' > "$LG_DIR/bin/same.sh"
chmod 0755 "$LG_DIR/bin/same.sh"
lg_script filtered.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "vnd.dovecot.filter", "fileinto",
	 "mailbox"];
if looptest { fileinto :create "Dup-before"; stop; }
filter "same.sh";
if looptest { fileinto :create "Dup-after"; stop; }
fileinto :create "Inbox";
SIEVE
lg_message filt "Robot <robot@example.net>" "Filter me" "Message-ID: <fl@x>"
# vnd.dovecot.filter must be enabled in the config, which applies to the
# plugins the config loads: both come from one plugin directory.
mkdir -p "$LG_DIR/plugins"
cp "$LG_MODULEDIR/sieve/lib90_sieve_extprograms_plugin.so" \
	"$(dirname "$LG_PLUGIN")/lib90_sieve_loopguard_plugin.so" \
	"$LG_DIR/plugins/"
lg_config "  sieve_plugins = sieve_extprograms sieve_loopguard
  sieve_plugin_dir = $LG_DIR/plugins
  $(lg_extension_setting +vnd.dovecot.filter)
  sieve_filter_bin_dir = $LG_DIR/bin"
LG_CONFIG_PLUGIN=1 lg_deliver filtered.sieve filt "" -f robot@example.net -e
lg_check "a message passed through filter is not its own duplicate" \
	"Inbox" "$(lg_outcome)"
LG_CONFIG_PLUGIN=1 lg_deliver filtered.sieve filt "" -f robot@example.net -e
lg_check "but its next copy is" "Dup-before" "$(lg_outcome)"
lg_config ""

LG_SCENARIO="logging"
lg_deliver default.sieve xloop "$(lg_at 2000)" -f robot@example.net \
	-r user@example.com
lg_check "one log line per firing" 1 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'loopguard: looptest fired')"
lg_check_match "the line names user, reasons and Message-ID" \
	"looptest fired: user=$LG_USER, .*reasons=marker" "$LG_OUT"
lg_message person2 "Alice <alice@example.com>" "Dinner?"
lg_deliver default.sieve person2 "$(lg_at 2001)" -f alice@example.com \
	-r user@example.com
lg_check "no log line when nothing fired" 0 \
	"$(printf '%s\n' "$LG_OUT" | grep -c 'loopguard: looptest fired')"
logdump=$(mdb_dump -p -n -s log "$LG_STATE" 2>&1)
lg_check_match "the firing is kept in the user's log" "marker" "$logdump"

LG_SCENARIO="compile"
lg_script every-tag.sieve <<'SIEVE'
require ["vnd.loopguard.looptest", "vnd.loopguard.ratelimit", "variables",
	"fileinto"];
if looptest :checks ["loop", "auto", "self", "hops"] :hops 20 :seconds 3600
	    :addresses ["a@example.com", "b@example.com"] :reasons "why" {
	fileinto "Loop";
}
if ratelimit :key "k-${why}" :thread :handle "h" :count 5 :seconds 60
	     :lock 120 :noupdate {
	fileinto "Over";
}
SIEVE
lg_deliver every-tag.sieve person ""
lg_check_match "a script with every tag of both tests compiles and runs" \
	"final result: success" "$LG_OUT"
dump=$(cd "$LG_DIR" && runuser -u "$LG_USER" -- sieve-dump \
	-c "$LG_DIR/dovecot.conf" $LG_LOAD every-tag.svbin 2>&1)
lg_check_match "sieve-dump shows check names, not a number" \
	"checks: hops marker duplicate auto-submitted precedence suppress list bounce system autoreply self" \
	"$dump"
lg_check_match "sieve-dump shows the ratelimit operands" \
	"RATELIMIT" "$dump"
lg_script unknown.sieve <<'SIEVE'
require "vnd.loopguard.looptest";

if looptest :checks ["loop", "robots"] { discard; }
SIEVE
lg_deliver unknown.sieve person ""
lg_check_match "an unknown check name is an error with its line" \
	"line 3: error: looptest test: unknown check name 'robots'" "$LG_OUT"
lg_check_match "the error lists the valid names" \
	"valid names: .*hops.*duplicate.*autoreply.*self.*loop.*auto" "$LG_OUT"
lg_script novars.sieve <<'SIEVE'
require "vnd.loopguard.looptest";
if looptest :reasons "why" { discard; }
SIEVE
lg_deliver novars.sieve person ""
lg_check_match ":reasons needs variables" \
	"line 2: error: .*:reasons.*requires the variables extension" "$LG_OUT"
lg_script badhops.sieve <<'SIEVE'
require "vnd.loopguard.looptest";
if looptest :hops "many" { discard; }
SIEVE
lg_deliver badhops.sieve person ""
lg_check_match "a string for :hops is a compile error" \
	"line 2: error: the :hops tag .* requires a number" "$LG_OUT"
lg_config "  sieve_plugins = sieve_loopguard
  sieve_plugin_dir = $(dirname "$LG_PLUGIN")
  $(lg_extension_setting -vnd.loopguard.looptest)"
LG_CONFIG_PLUGIN=1 lg_deliver default.sieve person ""
lg_check_match "sieve_extensions can disable looptest on its own" \
	"unknown Sieve capability .vnd.loopguard.looptest" "$LG_OUT"
lg_script rl.sieve <<'SIEVE'
require "vnd.loopguard.ratelimit";
if ratelimit { discard; }
SIEVE
LG_CONFIG_PLUGIN=1 lg_deliver rl.sieve person ""
lg_check_match "while ratelimit stays available" \
	"final result: success" "$LG_OUT"

lg_finish
