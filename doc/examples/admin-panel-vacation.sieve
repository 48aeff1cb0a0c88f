# admin-panel-vacation.sieve -- the vacation script an admin panel generates,
#                               with loopguard doing the checks
#
# Webmail and admin panels write a vacation script for their users when they
# switch on "out of office".  The rules they put in front of `vacation` are
# hand-made header tests; paraphrased (this is not their code):
#
#   Nextcloud Mail   answers unless the message has a List-Id header or a
#                    List-Unsubscribe header, or the From or Sender address
#                    starts with noreply@ or no-reply@.
#   Mailu, vexim     a similar handful of header tests in front of vacation;
#                    vexim notes that limiting replies per period would need
#                    a writable state file, so it does not.
#
# Pigeonhole's vacation already declines, on its own, mail with list
# headers, Auto-Submitted, Precedence bulk/list/junk or
# X-Auto-Response-Suppress, and mail from MAILER-DAEMON, owner-* and
# *-request senders (the panels repeat some of that because they write for
# any server).  What neither the panels' rules nor vacation catch: delivery
# reports relayed with a real envelope sender (multipart/report), no-reply
# envelope senders behind a friendly From, vendor auto-responder headers
# (X-Autoreply, X-Autorespond, ...), mail that is circulating -- and, above
# all, robots that use a new envelope sender for every message (VERP):
# vacation remembers envelope senders, so it answers each of those
# messages, and a robot that answers every mail never stops.
#
# This script keeps the panel's intent (answer people, never machines) and
# lets loopguard decide:
#  1. circulating mail is dropped (looptest, "loop" group);
#  2. machine mail is kept and not answered (looptest :checks "auto": the
#     panels' List-Id / List-Unsubscribe tests, vacation's own checks and
#     what both miss), before vacation is even considered;
#  3. the panels' one test that looptest does not make is kept: a no-reply
#     address in From or Sender.  looptest's "system" check looks at the
#     envelope sender, and a notification service may send From:
#     no-reply@... with a bounce address as envelope sender;
#  4. at most 3 replies a day per From address, whatever the envelope
#     sender (ratelimit keeps that count in loopguard's state -- the
#     "writable state file" a panel does not have).  Past the limit mail is
#     still delivered, only not answered.
#
# A panel that also limits the reply to a date range keeps its date tests
# around all of this; they are not about robots.

require ["vacation", "variables", "vnd.loopguard.looptest",
         "vnd.loopguard.ratelimit"];

# 1. Circulating mail: drop it.
if looptest {
    discard;
    stop;
}

# 2. and 3. Mail from a machine: keep it, never answer it.
if anyof (looptest :checks "auto",
          address :localpart :is ["from", "sender"]
                  ["noreply", "no-reply", "donotreply", "do-not-reply"]) {
    stop;
}

# 4. At most 3 replies a day to any one From address.
set "who" "";
if address :all :matches "from" "*" {
    set :lower "who" "${1}";
}
if ratelimit :handle "vacation" :key "${who}" :count 3 :seconds 86400 {
    stop;
}

vacation :days 1 :subject "Out of office"
"I am out of the office and will answer your message when I am back.";
