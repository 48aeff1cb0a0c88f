# forward.sieve -- forward all mail to another address, loop-safe
#
# Two mailboxes that forward to each other (or a chain that leads back) make
# a forwarding loop: each hop creates a new delivery, and without a guard the
# message circulates until some hop limit bounces it -- to the sender.
#
# Pigeonhole marks every redirected message with X-Sieve-Redirected-From
# (the forwarding user), and the delivering server adds a Delivered-To.  When
# the message comes back, looptest's "marker" check finds this user's address
# there (and the "duplicate" check has already seen the message), so the
# loop is detected at the first return.  The message is then kept here --
# the user sees it, and can fix the forwarding -- instead of being
# forwarded again or dropped.
#
# Replace forward-target@example.net with the address to forward to.

require ["vnd.loopguard.looptest"];

if looptest {
    keep;
    stop;
}

redirect "forward-target@example.net";
