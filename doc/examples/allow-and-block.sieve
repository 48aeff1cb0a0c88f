# allow-and-block.sieve -- a manual block list and an allow-list around
#                          loopguard's own guards
#
# Administrators and users keep two lists by hand:
#   - a block list: addresses and whole domains whose mail is always
#     dropped (a former partner's notification system that cannot be
#     switched off, a domain that only ever sends junk);
#   - an allow-list: senders that are never rate-limited (the company's own
#     monitoring, a partner's ticket system that legitimately sends many
#     messages), written as a regular expression so that one line covers
#     all addresses of a domain and its subdomains.
#
# The order matters:
#  1. the block list first: those messages are dropped, whatever else holds;
#  2. then circulating mail is dropped (looptest, "loop" group) -- also from
#     allowed senders: a loop is a loop, whoever started it;
#  3. allowed senders are kept here and never counted;
#  4. everybody else: more than 20 messages within 10 minutes from one
#     envelope sender is a flood; the rest is discarded and the sender stays
#     blocked for 30 minutes.
#
# The block list looks at both the From and Sender headers (`address`) and
# the envelope sender (`envelope`): robots often send with a bounce address
# in the envelope and a friendly From.  The allow-list looks at the
# envelope sender only: it loosens the protection, and a From header is the
# easiest thing to forge (the envelope sender is what SPF checks and where
# a bounce would go).  The regular expressions are POSIX extended,
# matched case-insensitively (Pigeonhole's `regex` extension), and anchored
# with ^ and $ -- without them "partner\\.example" would also allow
# "partner.example.attacker.example".
# In a Sieve string a backslash is written twice: "\\." is a literal dot.

require ["envelope", "regex", "vnd.loopguard.looptest",
         "vnd.loopguard.ratelimit"];

# 1. Block list: these addresses and domains are always dropped.
if anyof (address :all :is ["from", "sender"]
                  ["pest@annoying.example", "alerts@old-partner.example"],
          address :domain :is ["from", "sender"] ["junk-mailer.example"],
          envelope :domain :is "from" ["junk-mailer.example"]) {
    discard;
    stop;
}

# 2. Circulating mail: drop it.
if looptest {
    discard;
    stop;
}

# 3. Allow-list: never rate-limited.
if envelope :regex "from"
        ["^[^@]+@(.+\\.)?partner\\.example$",
         "^monitoring(\\+[^@]*)?@example\\.org$"] {
    keep;
    stop;
}

# 4. Everybody else: at most 20 messages in 10 minutes per sender.
if ratelimit :count 20 :seconds 600 :lock 1800 {
    discard;
    stop;
}
