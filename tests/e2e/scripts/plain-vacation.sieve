# Control script for the e2e tests (not an example): vacation with nothing
# but Sieve's own precautions.  Used to show that the loopguard examples are
# what makes the difference.
require ["vacation"];

vacation :days 1 :subject "Out of office"
"I am away until Monday and will read your message when I am back.";
