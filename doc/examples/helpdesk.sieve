# helpdesk.sieve -- acknowledge requests to a service mailbox, but only
#                   requests from people
#
# A shared mailbox such as helpdesk@ or support@ that confirms every request
# is the classic partner in a mail loop: it answers other robots, bounces,
# mailing lists, and -- through web forms, ticket tools or aliases that send
# "From: helpdesk@" -- even itself.
#
# looptest :checks ["loop", "auto", "self"] fires for all of those:
#   loop  - the message is circulating (hops, X-Loop / X-Sieve-Redirected-From /
#           Delivered-To markers, a duplicate of a message seen recently);
#   auto  - a machine sent it (Auto-Submitted, Precedence, list headers,
#           bounces and delivery reports, MAILER-DAEMON / noreply senders,
#           vendor auto-reply headers);
#   self  - the envelope sender, From or Reply-To is one of this mailbox's own
#           addresses.  "self" is opt-in because people do mail themselves;
#           a service mailbox never needs to answer itself.
# The mailbox's addresses are its envelope recipient plus :addresses (list
# its aliases there).
#
# Such mail is kept -- someone may need to look at it -- but not answered.
# :reasons puts the names of the checks that fired into ${why} (e.g.
# "bounce" or "self"), for further rules such as filing bounces away.

require ["vacation", "variables", "vnd.loopguard.looptest"];

if looptest :checks ["loop", "auto", "self"]
            :addresses ["support@example.org"] :reasons "why" {
    stop;
}

vacation :days 1 :subject "We have received your request"
"Thank you for contacting the helpdesk. We will get back to you soon.";
