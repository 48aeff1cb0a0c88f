# protect-vacation.sieve -- an out-of-office reply that cannot start a storm
#
# Sieve's vacation already answers each sender at most once per :days.  That
# memory is keyed on the envelope sender, and many robots (ticket systems,
# notification services, mailing software) send every message with its own
# bounce address (VERP: robot+4711@..., robot+4712@...).  To vacation each of
# those is a new person, so a robot that answers every mail it gets and a
# vacation that answers every "new" sender will ping-pong for ever.
#
# This script:
#  1. drops mail that is circulating (looptest's default "loop" group);
#  2. never answers mail that a machine generated: the "auto" group covers
#     Auto-Submitted, Precedence bulk/list/junk, X-Auto-Response-Suppress,
#     list headers, bounces (null sender, delivery reports), system senders
#     (MAILER-DAEMON, noreply, ...) and vendor auto-responder headers;
#  3. answers at most 5 messages per hour per From address, whatever the
#     envelope sender says.  The 6th message from the same From address within
#     the hour is still delivered -- it just gets no reply -- so no mail is
#     ever lost, and a robot that only answers our replies falls silent.
#
# People are not affected: vacation answers each of them once a day anyway,
# well below the limit of 5.

require ["vacation", "variables", "vnd.loopguard.looptest",
         "vnd.loopguard.ratelimit"];

# 1. Circulating mail: drop it.
if looptest {
    discard;
    stop;
}

# 2. Mail from a machine: keep it, never answer it.
if looptest :checks "auto" {
    stop;
}

# 3. At most 5 replies an hour to any one From address.
set "who" "";
if address :all :matches "from" "*" {
    set :lower "who" "${1}";
}
if ratelimit :handle "vacation" :key "${who}" :count 5 :seconds 3600 {
    stop;
}

vacation :days 1 :subject "Out of office"
"I am away until Monday and will read your message when I am back.";
