# Control script for the e2e tests (not an example): the kind of vacation
# script admin panels generate today -- hand-made header tests (List-Id,
# List-Unsubscribe, a no-reply address in From or Sender) in front of
# vacation, without loopguard.  Written for these tests; it copies no
# panel's code.  doc/examples/admin-panel-vacation.sieve is the same intent
# with loopguard.
require ["vacation"];

if anyof (exists "list-id",
          exists "list-unsubscribe",
          address :localpart :is ["from", "sender"] ["noreply", "no-reply"]) {
    stop;
}

vacation :days 1 :subject "Out of office"
"I am out of the office and will answer your message when I am back.";
