# discard-loops.sieve -- drop mail that circulates, and floods from one sender
#
# A general-purpose guard for any mailbox, meant to run first (for instance
# as a sieve_before script, or at the top of the user's own script).
#
# 1. `looptest` without :checks runs the "loop" group only: too many
#    Received hops, one of this user's addresses already in X-Loop /
#    X-Sieve-Redirected-From / a second Delivered-To, or the very same
#    message (From, Subject, Date, body) seen in the last 12 hours.  Such mail
#    is going round in circles; dropping it is what ends the circle.  Bounces
#    and list mail are NOT in this group, so nothing a person needs is lost.
#
# 2. More than 30 messages from one envelope sender within 5 minutes is a
#    flood (a broken script, a robot answering itself, a mail bomb).  The 31st
#    and every later one is discarded, and the sender stays blocked for 15
#    minutes after the last time it went over the limit -- even if it slows
#    down -- so a loop that keeps going stays stopped.  Every message is
#    counted, also the discarded ones.  Other senders are not affected: the
#    count is kept per sender.
#
# Administrators see each discard in the Dovecot log
# ("loopguard: ratelimit fired: ... locked-until=...") and with
# `doveadm loopguard list -u <user>`; `doveadm loopguard unblock` lifts a block.

require ["vnd.loopguard.looptest", "vnd.loopguard.ratelimit"];

if looptest {
    discard;
    stop;
}

if ratelimit :count 30 :seconds 300 :lock 900 {
    discard;
    stop;
}
