#!/usr/bin/env python3
"""End-to-end scenarios for sieve-loopguard against a real Dovecot.

    scenarios.py --workdir DIR [--builddir DIR] [--demo] [NAME ...]

Starts a private Dovecot (LMTP on 127.0.0.1, see e2elib.py), runs the named
scenarios (all by default) with fresh users for each, prints "PASS: <name>"
or "FAIL: <name>: <why>" per scenario, stops Dovecot and exits 1 if any
failed.  Normally started by run.sh (tests) or demo.sh (--demo: narrates
what happened instead of only judging it).

The Sieve scripts under test are the files in doc/examples/, used verbatim
(forward.sieve gets its target address substituted).  Only the concurrency
and restart scenarios, whose limits are part of the test itself, use the
small scripts in tests/e2e/scripts/; scripts/plain-vacation.sieve is a
control without loopguard that shows the examples make the difference.
"""

import argparse
import base64
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import (Dovecot, Failure, FlushLog, Message, check, example,
                    test_script, FIRED_RE, BAD_LOG_RE, DOMAIN, DOVECOT_24,
                    EXAMPLES, PASSWORD)
from managesieve import ManageSieveClient
from redisserver import RedisServer

SCENARIOS = []
# The stores a scenario runs against (scenarios.py --store): most look only
# at what Dovecot delivers and logs, and so prove the Redis driver keeps
# the LMDB driver's promises; some look at LMDB's file, some at Redis.
BOTH = ("lmdb", "redis")


def scenario(name, stores=("lmdb",)):
    def reg(fn):
        SCENARIOS.append((name, fn, stores))
        return fn
    return reg


class Ctx:
    def __init__(self, dc, name, demo=False, redis=None):
        self.dc = dc
        self.name = name
        self.demo = demo
        # the RedisServer every Dovecot of the run shares (--store redis)
        self.redis = redis
        # log lines a scenario expects to match BAD_LOG_RE
        self.expected_errors = []
        self.log_start = dc.log_offset()
        self.seen = set()
        self.facts = {}
        dc.archive_captures("before-" + name)

    def user(self, local, script, substitute=None):
        # fresh user and home per scenario
        return self.dc.user("%s-%s" % (self.name, local), script, substitute)

    def address(self, local):
        return "%s-%s@%s" % (self.name, local, DOMAIN)

    def new_captures(self):
        return self.dc.captures(self.seen)

    def log(self):
        return self.dc.log_lines(self.log_start)

    def fired(self, test=None, user=None):
        out = []
        for line in self.log():
            m = FIRED_RE.search(line)
            if m is None:
                continue
            if test is not None and m.group("test") != test:
                continue
            if user is not None and m.group("user") != user.address:
                continue
            out.append(m.groupdict())
        return out

    def say(self, text):
        if self.demo:
            print("    " + text)

    def bad_log_lines(self):
        return [l for l in self.log() if BAD_LOG_RE.search(l)
                and not any(r.search(l) for r in self.expected_errors)]


def all_250(codes, what):
    bad = [c for c in codes if c != 250]
    check(not bad, "%s: %d of %d LMTP replies were not 250 (e.g. %s)"
          % (what, len(bad), len(codes), bad[:5]))


def same_ids(got, want, what):
    got_s, want_s = sorted(got), sorted(want)
    if got_s != want_s:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        raise Failure("%s: stored %d messages, expected %d (missing %s, "
                      "unexpected %s)" % (what, len(got), len(want),
                                          missing[:3], extra[:3]))


# ---------------------------------------------------------------------------
# The robot: answers every message it receives.

ROBOT = "robot@remote.test"


def robot_storm(ctx, user, verp=True, bound=20, during=None):
    """Plays a robot that answers every mail it receives, against `user`.

    The robot starts the conversation with one message.  Each captured
    outgoing message addressed to the robot is answered with a new message
    (From/To robot@remote.test, new Message-ID, Subject "Re: ...", no RFC 3834
    headers, a body that differs each time).  With verp=True the robot uses a
    fresh envelope sender per message (robot+N@remote.test), as ticket and
    notification systems do.

    Stops when no reply comes back or after `bound` deliveries.  Returns
    dict(delivered=[Message], replies=[Captured to the robot],
    other=[Captured to others], ended=bool).  `during(i)` is called before
    the i-th robot delivery (to interleave other traffic)."""
    n = 1

    def robot_msg(to, subject, in_reply_to=None):
        env = "robot+%d@remote.test" % n if verp else ROBOT
        hdrs = [("In-Reply-To", in_reply_to)] if in_reply_to else []
        return Message('"Ticket Robot" <%s>' % ROBOT, to, subject,
                       env_from=env, headers=hdrs,
                       body="Thank you for your message. This is automatic "
                            "answer number %d.\n" % n)

    queue = [robot_msg(user.address, "Your request has been received")]
    delivered, replies, other = [], [], []
    while queue and len(delivered) < bound:
        m = queue.pop(0)
        if during:
            during(len(delivered))
        code = user.deliver(m)
        check(code == 250, "robot message %d: LMTP reply %d"
              % (len(delivered) + 1, code))
        delivered.append(m)
        for c in ctx.new_captures():
            if any(a.endswith("@remote.test") and a.startswith("robot")
                   for a in c.env_to):
                replies.append(c)
                n += 1
                queue.append(robot_msg(c.from_addr(),
                                       "Re: " + (c.header("Subject") or ""),
                                       c.header("Message-ID")))
            else:
                other.append(c)
    return dict(delivered=delivered, replies=replies, other=other,
                ended=not queue)


# ---------------------------------------------------------------------------

@scenario("pingpong", BOTH)
def s_pingpong(ctx):
    """1. Auto-reply ping-pong.

    Reasoning: vacation answers each *envelope sender* at most once per :days.
    A robot that keeps one address is therefore answered once and the
    conversation ends by vacation's own memory (checked below as a control:
    exactly 1 reply).  The storms seen in practice come from robots that use a
    new bounce address per message (VERP).  Then vacation alone answers every
    message: with the control script (plain vacation, no loopguard) the
    storm is still going when the harness stops it at 20 rounds.

    With doc/examples/protect-vacation.sieve, replies are limited to 5 per
    hour per From address (ratelimit :handle "vacation" :count 5): robot
    messages 1-5 are answered, message 6 is delivered but not answered, and
    since the robot only answers our replies, the storm ends.  Exact numbers:
    6 robot messages in, 6 stored, 0 discarded, 5 replies sent (to robot+1
    .. robot+5), 1 reply suppressed, one "ratelimit fired" log line."""
    # Control A: plain vacation, robot with one address -> 1 reply.
    c1 = ctx.user("control-fixed", test_script("plain-vacation.sieve"))
    r = robot_storm(ctx, c1, verp=False)
    check(r["ended"] and len(r["replies"]) == 1 and len(r["delivered"]) == 2,
          "control (plain vacation, fixed robot address): expected 2 "
          "messages and 1 reply, got %d and %d"
          % (len(r["delivered"]), len(r["replies"])))
    # Control B: plain vacation, VERP robot -> no end within the bound.
    c2 = ctx.user("control-verp", test_script("plain-vacation.sieve"))
    r = robot_storm(ctx, c2, verp=True, bound=20)
    check(not r["ended"] and len(r["replies"]) == 20,
          "control (plain vacation, VERP robot): expected the storm to run "
          "to the 20-round bound, got %d replies, ended=%s"
          % (len(r["replies"]), r["ended"]))
    ctx.facts["control_replies"] = len(r["replies"])

    # The example script.
    u = ctx.user("vacation", example("protect-vacation.sieve"))
    r = robot_storm(ctx, u, verp=True, bound=20)
    check(r["ended"], "storm did not end within 20 rounds (%d replies)"
          % len(r["replies"]))
    check(not r["other"], "unexpected outgoing mail: %r" % r["other"])
    check(len(r["replies"]) == 5,
          "expected exactly 5 replies to the robot, got %d"
          % len(r["replies"]))
    check([c.env_to for c in r["replies"]] ==
          [["robot+%d@remote.test" % i] for i in range(1, 6)],
          "replies went to %r" % [c.env_to for c in r["replies"]])
    for c in r["replies"]:
        check(c.env_from == "" and
              (c.header("Auto-Submitted") or "").startswith("auto-replied"),
              "reply not sent as an auto-reply from <>: %r" % c)
    check(len(r["delivered"]) == 6, "expected 6 robot messages, got %d"
          % len(r["delivered"]))
    same_ids(u.stored(), [m.msgid for m in r["delivered"]], "vacation user")
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 1 and fired[0]["handle"] == "vacation"
          and fired[0]["key"] == ROBOT,
          "expected one 'ratelimit fired' log line for handle=vacation "
          "key=%s, got %r" % (ROBOT, fired))
    check(not ctx.fired("looptest", u),
          "looptest fired on the robot's messages: %r"
          % ctx.fired("looptest", u))
    ctx.facts.update(user=u.address, msgs_in=len(r["delivered"]),
                     stored=len(u.stored()),
                     discarded=len(r["delivered"]) - len(u.stored()),
                     replies=len(r["replies"]),
                     suppressed=len(r["delivered"]) - len(r["replies"]),
                     fired=fired)


def dsn(frm, to, env_from, original_to="someone@remote.test"):
    boundary = "dsn-boundary-e2e"
    body = (
        "--%(b)s\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        "This is the mail system at host mx.remote.test.\n"
        "Your message could not be delivered to <%(ot)s>.\n\n"
        "--%(b)s\n"
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.remote.test\n\n"
        "Final-Recipient: rfc822; %(ot)s\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        "--%(b)s\n"
        "Content-Type: text/rfc822-headers\n\n"
        "From: %(to)s\n"
        "To: %(ot)s\n"
        "Subject: Lunch\n\n"
        "--%(b)s--\n") % dict(b=boundary, ot=original_to, to=to)
    return Message(frm, to, "Undelivered Mail Returned to Sender",
                   env_from=env_from, raw_body=body,
                   content_type='multipart/report; '
                   'report-type=delivery-status; boundary="%s"' % boundary)


@scenario("bounce", BOTH)
def s_bounce(ctx):
    """2. Bounces and other machine mail reach auto-responders.

    a) a bounce with the null sender <> to protect-vacation.sieve and to
       helpdesk.sieve: stored, no reply.  (Sieve's vacation never answers <>
       by itself either; the test checks that loopguard recognised it:
       a "looptest fired ... reasons=bounce" log line.)
    b) a delivery report relayed with a real envelope sender
       (relay@remote.test): the control (plain vacation) answers it -- 1
       reply -- protect-vacation.sieve and helpdesk.sieve do not (0).
    c) helpdesk.sieve hearing itself (a web form sending From: the helpdesk
       address with the web server's envelope sender): the control answers
       it, the helpdesk does not ("self").
    d) a person writing to the helpdesk gets exactly one acknowledgement."""
    vac = ctx.user("vacation", example("protect-vacation.sieve"))
    hd = ctx.user("helpdesk", example("helpdesk.sieve"))
    ctl = ctx.user("control", test_script("plain-vacation.sieve"))

    def deliver_expect(user, msg, replies, what):
        code = user.deliver(msg)
        check(code == 250, "%s: LMTP reply %d" % (what, code))
        check(msg.msgid in user.stored(), "%s: message not stored" % what)
        caps = ctx.new_captures()
        check(len(caps) == replies, "%s: expected %d replies, got %d: %r"
              % (what, replies, len(caps), caps))
        return caps

    def reasons(user):
        return [set(f["reasons"].split()) for f in ctx.fired("looptest", user)]

    for u in (vac, hd):
        deliver_expect(u, dsn("Mail Delivery System <MAILER-DAEMON@remote.test>",
                              u.address, env_from=""), 0,
                       "null-sender bounce to %s" % u.address)
        check(any("bounce" in r for r in reasons(u)),
              "no 'looptest fired ... bounce' log line for %s: %r"
              % (u.address, ctx.fired("looptest", u)))

    relayed = lambda u: dsn("Mail Delivery System <relay@remote.test>",
                            u.address, env_from="relay@remote.test")
    deliver_expect(ctl, relayed(ctl), 1, "relayed report to the control")
    deliver_expect(vac, relayed(vac), 0, "relayed report to protect-vacation")
    deliver_expect(hd, relayed(hd), 0, "relayed report to helpdesk")

    selfmsg = lambda u: Message("Helpdesk <%s>" % u.address, u.address,
                                "New web form request",
                                env_from="www-data@web.example.org")
    deliver_expect(ctl, selfmsg(ctl), 1, "self-addressed form to the control")
    deliver_expect(hd, selfmsg(hd), 0, "self-addressed form to helpdesk")
    check(any("self" in r for r in reasons(hd)),
          "no 'looptest fired ... self' log line for the helpdesk: %r"
          % ctx.fired("looptest", hd))

    person = Message("Dana <dana@remote.test>", hd.address, "Printer broken")
    caps = deliver_expect(hd, person, 1, "person to helpdesk")
    check(caps[0].env_to == ["dana@remote.test"],
          "acknowledgement went to %r" % caps[0].env_to)
    check(len(hd.stored()) == 4 and len(vac.stored()) == 2,
          "stored: helpdesk %d (expected 4), vacation %d (expected 2)"
          % (len(hd.stored()), len(vac.stored())))


@scenario("forward-loop", BOTH)
def s_forward_loop(ctx):
    """3. Two users forward to each other with doc/examples/forward.sieve.

    The harness acts as the MTA: every captured redirect is delivered via
    LMTP to its target, up to 20 rounds.  Expected, exactly: carol -> alice
    (delivery 1, redirect 1 to bob) -> bob (delivery 2, redirect 2 to alice)
    -> alice (delivery 3): looptest finds alice's address in
    X-Sieve-Redirected-From / a second Delivered-To ("marker") and the
    message was already seen ("duplicate"), so alice keeps it.  3
    deliveries, 2 redirects, alice stores 1 message, bob 0, nothing lost."""
    bob = ctx.user("bob", example("forward.sieve"),
                   {"forward-target@example.net": ctx.address("alice")})
    alice = ctx.user("alice", example("forward.sieve"),
                     {"forward-target@example.net": bob.address})
    users = {alice.address: alice, bob.address: bob}
    m = Message("Carol <carol@remote.test>", alice.address, "Lunch on Friday?")
    queue = [(m.env_from, alice.address, bytes(m))]
    deliveries, redirects = [], []
    while queue and len(deliveries) < 20:
        sender, rcpt, data = queue.pop(0)
        code = ctx.dc.deliver(sender, rcpt, data)
        check(code == 250, "delivery %d to %s: LMTP reply %d"
              % (len(deliveries) + 1, rcpt, code))
        deliveries.append(rcpt)
        for c in ctx.new_captures():
            redirects.append(c)
            for to in c.env_to:
                check(to in users, "redirect to unexpected %s" % to)
                queue.append((c.env_from or "", to, c.raw))
    check(not queue, "forwarding loop still going after 20 deliveries")
    check(deliveries == [alice.address, bob.address, alice.address],
          "deliveries went %r, expected alice, bob, alice" % deliveries)
    check(len(redirects) == 2, "expected 2 redirects, got %d" % len(redirects))
    same_ids(alice.stored(), [m.msgid], "alice")
    same_ids(bob.stored(), [], "bob")
    fired = ctx.fired("looptest", alice)
    check(len(fired) == 1 and "marker" in fired[0]["reasons"].split(),
          "expected one 'looptest fired ... marker' line for alice, got %r"
          % fired)
    check(not ctx.fired("looptest", bob),
          "looptest fired for bob: %r" % ctx.fired("looptest", bob))


def flood_msgs(user, n, sender="flood@remote.test", tag="flood"):
    return [Message("Flooder <%s>" % sender, user.address,
                    "%s %d" % (tag, i + 1)) for i in range(n)]


@scenario("flood", BOTH)
def s_flood(ctx):
    """4. 200 messages from one sender to doc/examples/discard-loops.sieve
    (ratelimit :count 30 :seconds 300 :lock 900): the first 30 are stored,
    170 are discarded (every LMTP reply is still 250), and each discard is
    logged: 170 "ratelimit fired" lines, all with a locked-until time."""
    u = ctx.user("user", example("discard-loops.sieve"))
    msgs = flood_msgs(u, 200)
    codes = ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs])
    all_250(codes, "flood")
    same_ids(u.stored(), [m.msgid for m in msgs[:30]], "flood")
    check(not ctx.new_captures(), "flood produced outgoing mail")
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 170,
          "expected 170 'ratelimit fired' log lines, got %d" % len(fired))
    check(all(f["key"] == "flood@remote.test" and f["locked"] != "-"
              for f in fired),
          "ratelimit log lines without key/lock: %r" % fired[:2])
    ctx.facts.update(user=u.address, msgs_in=len(msgs),
                     stored=len(u.stored()),
                     discarded=len(msgs) - len(u.stored()), fired=fired)
    if ctx.demo:
        # what the administrator sees: doveadm loopguard list
        rc, table, err = ctx.dc.loopguard("list", u, fmt="flow")
        check(rc == 0 and "flood@remote.test" in table,
              "doveadm loopguard list -u %s: exit %d, %s%s"
              % (u.address, rc, table, err))
        ctx.facts.update(doveadm_list=table)


@scenario("people", BOTH)
def s_people(ctx):
    """5. People's mail gets through before, during and after a storm.

    a) discard-loops.sieve: 4 people send 1 message each before, during
       (interleaved into a 100-message flood from flood@remote.test) and
       after the flood.  All 12 are stored, plus exactly 30 of the flood.
    b) protect-vacation.sieve: 3 people write before, during and after the
       VERP robot storm of scenario 1.  All 9 are stored, each person gets
       exactly 1 vacation reply (vacation's :days 1), the robot exactly 5."""
    u = ctx.user("flooded", example("discard-loops.sieve"))
    people = ["p%d@remote.test" % i for i in range(1, 5)]

    def person_msgs(rcpt, when):
        return [Message("Person %s <%s>" % (p[:2], p), rcpt,
                        "Hello (%s)" % when) for p in people]

    before, during, after = (person_msgs(u.address, w)
                             for w in ("before", "during", "after"))
    flood = flood_msgs(u, 100)
    seq = list(before)
    for i, m in enumerate(flood):
        seq.append(m)
        if i % 25 == 10:
            seq.append(during[i // 25])
    seq += after
    codes = ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in seq])
    all_250(codes, "people + flood")
    same_ids(u.stored(), [m.msgid for m in before + during + after]
             + [m.msgid for m in flood[:30]], "flooded user")

    v = ctx.user("vacation", example("protect-vacation.sieve"))
    people = ["q%d@remote.test" % i for i in range(1, 4)]
    pm = {w: person_msgs(v.address, w) for w in ("before", "during", "after")}
    person_replies = []

    def send_people(which):
        for m in pm[which]:
            check(v.deliver(m) == 250, "person message: LMTP error")
        person_replies.extend(ctx.new_captures())

    send_people("before")
    r = robot_storm(ctx, v, during=lambda i: i == 3 and send_people("during"))
    send_people("after")
    person_replies += r["other"]
    check(r["ended"] and len(r["replies"]) == 5,
          "robot storm: %d replies to the robot (expected 5), ended=%s"
          % (len(r["replies"]), r["ended"]))
    same_ids(v.stored(), [m.msgid for w in pm.values() for m in w]
             + [m.msgid for m in r["delivered"]], "vacation user")
    got = sorted(a for c in person_replies for a in c.env_to)
    check(got == sorted(people),
          "vacation replies to people: %r, expected one each to %r"
          % (got, people))


@scenario("concurrency", BOTH)
def s_concurrency(ctx):
    """6. 8 LMTP clients deliver 400 distinct messages from one sender to one
    user at once (scripts/ratelimit-100.sieve: :count 100 :seconds 3600).
    The check and the record are one LMDB write transaction, so exactly 100
    are stored, every reply is 250, 300 "ratelimit fired" lines, and the log
    has no Error/Panic/Fatal."""
    u = ctx.user("user", test_script("ratelimit-100.sieve"))
    msgs = flood_msgs(u, 400, sender="bulk@remote.test", tag="bulk")
    codes = ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs], parallel=8)
    all_250(codes, "concurrent delivery")
    stored = u.stored()
    check(len(stored) == 100, "expected exactly 100 stored, got %d"
          % len(stored))
    check(len(set(stored)) == 100 and set(stored) <= {m.msgid for m in msgs},
          "stored messages are not 100 distinct ones of those sent")
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 300, "expected 300 'ratelimit fired' lines, got %d"
          % len(fired))
    pids = {l.split("<")[1].split(">")[0] for l in ctx.log()
            if "lmtp(%s)<" % u.address in l}
    check(len(pids) > 1, "deliveries were not spread over several LMTP "
          "processes (pids %r): no real concurrency" % pids)


@scenario("restart")
def s_restart(ctx):
    """7. Counts survive a Dovecot restart (scripts/ratelimit-15.sieve,
    :count 15 :seconds 3600): 10 messages, restart, 10 more.  Exactly
    messages 1-15 are stored; 16-20 are discarded."""
    u = ctx.user("user", test_script("ratelimit-15.sieve"))
    msgs = flood_msgs(u, 20, sender="steady@remote.test", tag="steady")
    jobs = [(m.env_from, u.address, bytes(m)) for m in msgs]
    all_250(ctx.dc.deliver_many(jobs[:10]), "before restart")
    same_ids(u.stored(), [m.msgid for m in msgs[:10]], "before restart")
    db = os.path.join(u.home, ".dovecot.loopguard")
    check(os.path.exists(db),
          "no LMDB state at ~/.dovecot.loopguard after 10 deliveries")
    st = os.stat(db)
    check(st.st_mode & 0o777 == 0o600 and st.st_uid == ctx.dc.uid,
          "~/.dovecot.loopguard is mode %o uid %d, expected 600 uid %d"
          % (st.st_mode & 0o777, st.st_uid, ctx.dc.uid))
    old_pid = ctx.dc.master_pid()
    ctx.dc.restart()
    check(ctx.dc.master_pid() not in (None, old_pid), "dovecot did not restart")
    all_250(ctx.dc.deliver_many(jobs[10:]), "after restart")
    same_ids(u.stored(), [m.msgid for m in msgs[:15]], "after restart")


@scenario("thread-flood", BOTH)
def s_thread_flood(ctx):
    """8. doc/examples/thread-flood.sieve (ratelimit :thread :count 2
    :seconds 7200, over the limit -> fileinto "Muted"): a notifier sends 6
    messages in thread A and 2 in thread B, another sender 1 in thread A.
    INBOX: A1, A2, B1, B2 and the other sender's message; Muted: A3-A6."""
    u = ctx.user("user", example("thread-flood.sieve"))
    notifier = "Tracker <tracker@remote.test>"

    def thread(root_subject, n, frm=notifier, root=None):
        out = []
        for i in range(n):
            hdrs = []
            if root is not None or out:
                r = root or out[0].msgid
                hdrs = [("In-Reply-To", r), ("References", r)]
            out.append(Message(frm, u.address, "%s%s" % (
                "Re: " if hdrs else "", root_subject), headers=hdrs))
        return out

    a = thread("Ticket #1 updated", 6)
    b = thread("Ticket #2 updated", 2)
    other = thread("Ticket #1 updated", 1, frm="Erin <erin@remote.test>",
                   root=a[0].msgid)
    seq = a[:3] + b[:1] + other + a[3:] + b[1:]
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in seq]), "thread flood")
    same_ids(u.stored(), [m.msgid for m in a[:2] + b + other], "INBOX")
    same_ids(u.stored("Muted"), [m.msgid for m in a[2:]], "Muted")


# ---------------------------------------------------------------------------
# doveadm loopguard, the real doveadm plugin against the running Dovecot
# (e2elib.Dovecot.doveadm: private module directory in a mount namespace).

def lg(ctx, command, user, *args, faketime=None, rc=0):
    """doveadm -f json loopguard COMMAND -u USER ARGS; checks the exit code
    (and, on success, JSON output and no error on stderr).  Returns (parsed
    output, stderr).  user=None: -A (all users)."""
    address = user if user is None or isinstance(user, str) else user.address
    got, data, err = ctx.dc.loopguard(command, address, *args,
                                      faketime=faketime)
    what = "doveadm%s loopguard %s %s%s" % (
        " (FAKETIME=%s)" % faketime if faketime else "", command,
        "-A" if address is None else "-u " + address,
        "".join(" " + a for a in args))
    check(got == rc, "%s: exit status %d, expected %d; stderr: %s"
          % (what, got, rc, err.strip() or "(empty)"))
    if rc == 0:
        check(isinstance(data, list), "%s: output is not a JSON list"
              % what)
        check(not BAD_LOG_RE.search(err), "%s: stderr: %s"
              % (what, err.strip()))
    return data, err


def iso_time(s):
    """doveadm's ISO 8601 time with UTC offset -> UNIX time."""
    return datetime.datetime.fromisoformat(s).timestamp()


def log_time(s):
    """The Dovecot log's locked-until (local time, no offset) -> UNIX time."""
    return time.mktime(time.strptime(s, "%Y-%m-%d %H:%M:%S"))


@scenario("doveadm", BOTH)
def s_doveadm(ctx):
    """9. doveadm loopguard list / log / unblock after a flood.

    40 messages from flood@remote.test to discard-loops.sieve (:count 30
    :seconds 300 :lock 900): 30 stored, 10 discarded.  `list -u -f json`:
    exactly one row, handle "", key flood@remote.test, count 31 (the store
    remembers at most limit+1), limit 30, window 300, lock 900, locked-until
    equal (+-2 s, parsed) to the locked-until of the last "ratelimit fired"
    log line and 900 s after last-seen; `--handle vacation` lists nothing.
    `log -u -f json`: exactly the 10 discarded messages, oldest first, by
    Message-ID, each test=ratelimit, key flood@remote.test; none of the 30
    stored ones; the same with --since 10m, none with --since <a UNIX time
    an hour ahead>, exit 64 for --since yesterday.  `unblock` of an unknown
    key: exit 68 and "not found" on stderr, nothing changes.  `unblock
    flood@remote.test`: exit 0, no output, list empty; the next message from
    the flooder is stored in INBOX (31 stored) and list shows it counted
    once, not locked.
    A user with a home but no store, and one without a home: list and log
    are [], purge prints purged 0, exit 0; no store is created.  The system
    doveadm module directory never gets our plugin."""
    u = ctx.user("user", example("discard-loops.sieve"))
    msgs = flood_msgs(u, 40)
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs]), "flood")
    same_ids(u.stored(), [m.msgid for m in msgs[:30]], "flood")
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 10, "expected 10 'ratelimit fired' lines, got %d"
          % len(fired))

    rows, _ = lg(ctx, "list", u)
    check(len(rows) == 1, "list: expected 1 row, got %r" % rows)
    r = rows[0]
    want = {"handle": "", "key": "flood@remote.test", "count": 31,
            "limit": 30, "window": 300, "lock": 900}
    check({k: r.get(k) for k in want} == want,
          "list: got %r, expected %r" % (r, want))
    check(r["locked-until"] != "-", "list: key not locked: %r" % r)
    until = iso_time(r["locked-until"])
    logged = log_time(fired[-1]["locked"])
    check(abs(until - logged) <= 2,
          "list: locked-until %s, but the last 'ratelimit fired' log line "
          "says %s" % (r["locked-until"], fired[-1]["locked"]))
    check(abs(until - iso_time(r["last-seen"]) - 900) <= 1,
          "list: locked-until %s is not last-seen %s + 900 s"
          % (r["locked-until"], r["last-seen"]))
    check(abs(iso_time(r["last-seen"]) - time.time()) < 60,
          "list: last-seen %s is not now" % r["last-seen"])
    rows, _ = lg(ctx, "list", u, "--handle", "vacation")
    check(rows == [], "list --handle vacation: expected [], got %r" % rows)

    events, _ = lg(ctx, "log", u)
    ids = [e.get("message-id") for e in events]
    check(ids == [m.msgid for m in msgs[30:]],
          "log: expected the 10 discarded Message-IDs %s..%s in order, got "
          "%d events: %r" % (msgs[30].msgid, msgs[39].msgid, len(ids),
                             ids[:3]))
    check(all(e.get("test") == "ratelimit" and
              e.get("key") == "flood@remote.test" for e in events),
          "log: events not test=ratelimit key=flood@remote.test: %r"
          % events[:2])
    check(not set(ids) & {m.msgid for m in msgs[:30]},
          "log: stored messages appear in the log")
    check(events[-1].get("locked-until") == r["locked-until"],
          "log: last event locked-until %r, list says %r"
          % (events[-1].get("locked-until"), r["locked-until"]))
    recent, _ = lg(ctx, "log", u, "--since", "10m")
    check(recent == events, "log --since 10m: %d events, expected the "
          "same %d" % (len(recent), len(events)))
    later, _ = lg(ctx, "log", u, "--since", str(int(time.time()) + 3600))
    check(later == [], "log --since <in an hour>: %r" % later[:2])
    lg(ctx, "log", u, "--since", "yesterday", rc=64)

    # unblock: an unknown key fails and changes nothing
    _, err = lg(ctx, "unblock", u, "nobody@remote.test", rc=68)
    check("not found" in err, "unblock of an unknown key: stderr does "
          "not say 'not found': %r" % err.strip())
    rows, _ = lg(ctx, "list", u)
    check(len(rows) == 1 and rows[0]["count"] == 31,
          "list after a failed unblock: %r" % rows)
    # a known one
    rc, out, err = ctx.dc.loopguard("unblock", u, "flood@remote.test",
                                    fmt="flow")
    check(rc == 0 and out.strip() == "" and not BAD_LOG_RE.search(err),
          "unblock flood@remote.test: exit %d, stdout %r, stderr %r"
          % (rc, out, err))
    rows, _ = lg(ctx, "list", u)
    check(rows == [], "list after unblock: expected [], got %r" % rows)
    nxt = flood_msgs(u, 1, tag="after unblock")[0]
    check(u.deliver(nxt) == 250, "message after unblock: LMTP error")
    same_ids(u.stored(), [m.msgid for m in msgs[:30] + [nxt]],
             "after unblock")
    check(len(ctx.fired("ratelimit", u)) == 10,
          "ratelimit fired for the message after unblock")
    rows, _ = lg(ctx, "list", u)
    check(len(rows) == 1 and rows[0]["count"] == 1
          and rows[0]["locked-until"] == "-",
          "list after unblock + 1 message: expected count 1, not locked, "
          "got %r" % rows)

    # users without a store: empty, not an error, nothing created
    empty = ctx.user("nostore", example("discard-loops.sieve"))
    # doveadm reads the settings as the Sieve plugin does: on 2.3 "y" is a
    # boolean, as Dovecot 2.3's own rule has it
    ctx.dc.add_user(empty.address, empty.home,
                    {"sieve_loopguard_sync": "yes" if DOVECOT_24 else "y"})
    ghost = ctx.dc.add_user(ctx.address("nohome"))  # home never created
    for who in (empty.address, ghost):
        rows, err = lg(ctx, "list", who)
        check(rows == [], "list -u %s (no store): %r" % (who, rows))
        check("sieve_loopguard_" not in err, "list -u %s: a setting was "
              "refused: %s" % (who, err.strip()))
        rows, _ = lg(ctx, "log", who)
        check(rows == [], "log -u %s (no store): %r" % (who, rows))
        rows, _ = lg(ctx, "purge", who)
        check(rows == [{"purged": 0}], "purge -u %s (no store): %r"
              % (who, rows))
        lg(ctx, "unblock", who, "flood@remote.test", rc=68)
    check(os.listdir(empty.home) == [".dovecot.sieve"],
          "doveadm left files in a home without a store: %r"
          % os.listdir(empty.home))
    check(not os.path.exists(os.path.join(ctx.dc.home_root, ghost)),
          "doveadm created a home for %s" % ghost)


@scenario("doveadm-purge")
def s_doveadm_purge(ctx):
    """10. doveadm loopguard purge.

    a) discard-loops.sieve, 3 messages from a@remote.test and 2 from
       b@remote.test (nothing fires): list shows keys a (count 3) and b
       (count 2).  purge now: purged 0, list unchanged (nothing expired).
       With doveadm's clock 2 days ahead (libfaketime, doveadm only): list
       is empty (expired), purge prints purged 7 = 2 keys + the 5 messages'
       duplicate fingerprints; then, in real time, list is empty and purge
       prints 0.
    b) another user, 35 flood messages (5 discarded, 5 log events):
       purge --all in real time prints purged 36 (1 key + 35 fingerprints),
       list and log are empty, and the flooder's next message is stored."""
    u = ctx.user("aged", example("discard-loops.sieve"))
    msgs = (flood_msgs(u, 3, sender="a@remote.test", tag="a")
            + flood_msgs(u, 2, sender="b@remote.test", tag="b"))
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs]), "a and b")
    same_ids(u.stored(), [m.msgid for m in msgs], "a and b")

    def counts():
        rows, _ = lg(ctx, "list", u)
        return sorted((r["key"], r["count"]) for r in rows)

    want = [("a@remote.test", 3), ("b@remote.test", 2)]
    check(counts() == want, "list: %r, expected %r" % (counts(), want))
    rows, _ = lg(ctx, "purge", u)
    check(rows == [{"purged": 0}], "purge before expiry: %r, expected "
          "purged 0" % rows)
    check(counts() == want, "list after purging nothing: %r" % counts())

    rows, _ = lg(ctx, "list", u, faketime="+2d")
    check(rows == [], "list 2 days later: expected [], got %r (is "
          "libfaketime reaching doveadm?)" % rows)
    rows, _ = lg(ctx, "purge", u, faketime="+2d")
    check(rows == [{"purged": 7}], "purge 2 days later: %r, expected "
          "purged 7 (2 keys, 5 fingerprints)" % rows)
    check(counts() == [], "list after purge: %r" % counts())
    rows, _ = lg(ctx, "purge", u, faketime="+2d")
    check(rows == [{"purged": 0}], "second purge: %r" % rows)

    w, msgs = flooded_user(ctx, "wiped")
    rows, _ = lg(ctx, "purge", w, "--all")
    check(rows == [{"purged": 36}], "purge --all: %r, expected purged 36 "
          "(1 key, 35 fingerprints)" % rows)
    check_wiped(ctx, w, msgs)


def flooded_user(ctx, name):
    """A user with discard-loops.sieve after 35 flood messages from one
    sender: 30 stored, 5 discarded and logged."""
    w = ctx.user(name, example("discard-loops.sieve"))
    msgs = flood_msgs(w, 35)
    all_250(ctx.dc.deliver_many([(m.env_from, w.address, bytes(m))
                                 for m in msgs]), "flood")
    events, _ = lg(ctx, "log", w)
    check(len(events) == 5, "log before purge: %d events, expected 5"
          % len(events))
    return w, msgs


def check_wiped(ctx, w, msgs):
    """After purge --all of flooded_user(): list and log are empty and the
    flooder's next message is stored."""
    rows, _ = lg(ctx, "list", w)
    check(rows == [], "list after purge --all: %r" % rows)
    events, _ = lg(ctx, "log", w)
    check(events == [], "log after purge --all: %r" % events[:2])
    nxt = flood_msgs(w, 1, tag="after purge")[0]
    check(w.deliver(nxt) == 250, "message after purge --all: LMTP error")
    same_ids(w.stored(), [m.msgid for m in msgs[:30] + [nxt]],
             "after purge --all")


@scenario("doveadm-concurrent")
def s_doveadm_concurrent(ctx):
    """11. doveadm loopguard list while deliveries run.

    scripts/ratelimit-100.sieve: 8 LMTP sessions deliver 200 messages from
    one sender while `list` runs 20 times in a row.  Every list call exits
    0 with a JSON list, the counts it sees never go down and never exceed
    101, at least one call ran while the deliveries were going on; every
    LMTP reply is 250, exactly 100 stored, 100 "ratelimit fired" lines, and
    afterwards list shows count 101."""
    u = ctx.user("user", test_script("ratelimit-100.sieve"))
    msgs = flood_msgs(u, 200, sender="bulk@remote.test", tag="bulk")
    calls = []
    started = threading.Event()

    def lister():
        started.set()
        for _ in range(20):
            t0 = time.time()
            rc, data, err = ctx.dc.loopguard("list", u)
            calls.append((t0, rc, data, err))

    th = threading.Thread(target=lister)
    th.start()
    started.wait()
    t_start = time.time()
    codes = ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs], parallel=8)
    t_end = time.time()
    th.join(120)
    check(not th.is_alive(), "list calls did not finish")
    all_250(codes, "deliveries during list")
    check(len(calls) == 20, "%d list calls instead of 20" % len(calls))
    bad = [(rc, err.strip()) for _, rc, data, err in calls
           if rc != 0 or not isinstance(data, list)
           or BAD_LOG_RE.search(err)]
    check(not bad, "%d of 20 list calls failed: %r" % (len(bad), bad[:3]))
    seen = [data[0]["count"] if data else 0 for _, _, data, _ in calls]
    check(all(len(d) <= 1 for _, _, d, _ in calls),
          "list showed more than one key")
    check(seen == sorted(seen) and seen[-1] <= 101,
          "counts seen by list went down or over 101: %r" % seen)
    during = sum(1 for t0, _, _, _ in calls if t0 < t_end)
    check(during >= 1, "no list call ran during the deliveries")
    check(len(u.stored()) == 100, "expected exactly 100 stored, got %d"
          % len(u.stored()))
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 100, "expected 100 'ratelimit fired' lines, got %d"
          % len(fired))
    rows, _ = lg(ctx, "list", u)
    check(len(rows) == 1 and rows[0]["count"] == 101,
          "list afterwards: expected count 101, got %r" % rows)
    ctx.facts.update(list_during=during, seen=seen,
                     delivery_seconds=t_end - t_start)


HOSTILE = ("evil\nforged\trow\r\x1b]0;pwned\x07\x1b[2J\"q\" 'q' \x7f\u009b1m"
           + "K" * 3000)


def encoded_words(text):
    """text as RFC 2047 encoded words (45 bytes each), folded."""
    raw = text.encode()
    return "\r\n ".join("=?utf-8?b?%s?=" % base64.b64encode(
        raw[i:i + 45]).decode() for i in range(0, len(raw), 45))


def old_log_entry(path, key):
    """Appends a log entry with raw control bytes and 5,000-byte values, as
    a store written before values were sanitized may hold, with mdb_load."""
    def esc(b):
        return b.replace(b"\x01", b"\x011").replace(b"\t", b"\x01t") \
                .replace(b"\n", b"\x01n").replace(b"\r", b"\x01r")
    fields = [b"%d" % int(time.time()), b"ratelimit", esc(key), esc(key),
              b"", esc(b"<" + b"\x1b[2J\n\t\"" * 1250 + b"@old>"), b"2",
              b"300", b"0"]
    value = b"\x01" + b"\t".join(fields)
    hexed = lambda b: "".join("\\%02x" % c for c in b)
    text = "%s\n%s\n" % (hexed(b"\x7f" + b"\0" * 7), hexed(value))
    p = subprocess.run(["mdb_load", "-T", "-n", "-s", "log", path],
                       input=text.encode(), capture_output=True)
    check(p.returncode == 0, "mdb_load: %s" % p.stderr.decode().strip())


def check_safe_text(what, text, rows, fields, sep):
    """Plain-text formatter output: rows lines (header included), each
    with fields columns when sep is given, no control byte but the line
    ends (and sep), no overlong line."""
    lines = text.rstrip("\n").split("\n")
    check(len(lines) == rows, "%s: %d lines, expected %d (forged rows?): "
          "%r" % (what, len(lines), rows, [l[:80] for l in lines]))
    for line in lines:
        bad = [c for c in line if (ord(c) < 0x20 and c != sep) or
               0x7f <= ord(c) <= 0x9f]
        check(not bad, "%s: control characters %r in %r"
              % (what, bad[:5], line[:120]))
        check(len(line.encode()) <= fields * 230,
              "%s: a line of %d bytes" % (what, len(line.encode())))
        if sep is not None:
            check(len(line.split(sep)) == fields, "%s: %d columns, "
                  "expected %d: %r" % (what, len(line.split(sep)),
                                       fields, line[:120]))


@scenario("doveadm-hostile")
def s_doveadm_hostile(ctx):
    """14. doveadm prints sender-controlled text safely.

    scripts/hostile-key.sieve takes the key and the handle from the decoded
    Subject; two messages whose Subject decodes to newlines, tabs, ESC
    sequences, DEL, a C1 CSI, quotes and 3,000 bytes, with a 5,000-byte
    Message-ID: the second fires.  Stored: the key and handle of the
    record and the log entry are at most 200 bytes, without control
    characters.  A log entry as an older store may hold (raw newlines,
    tabs, ESC, 5,000 bytes) is added with mdb_load.  Then for `list` and
    `log` with -f tab, flow, table and json: exactly one line per row (no
    forged rows), no control character, no value over 200 bytes, and
    JSON that parses."""
    u = ctx.user("user", test_script("hostile-key.sieve"))
    msgid = "<" + "m" * 5000 + ".\"q\".\x1b[2J@hostile.test>"
    msgs = [Message("hostile@remote.test", u.address,
                    encoded_words(HOSTILE), msgid=msgid,
                    body="Hostile %d.\n" % i) for i in range(2)]
    all_250([u.deliver(m) for m in msgs], "hostile")
    check(len(u.stored()) == 1, "expected 1 stored message, got %d"
          % len(u.stored()))
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 1, "expected 1 'ratelimit fired', got %d"
          % len(fired))

    rows, _ = lg(ctx, "list", u)
    events, _ = lg(ctx, "log", u)
    check(len(rows) == 1 and len(events) == 1,
          "list/log: %d rows, %d events" % (len(rows), len(events)))
    for v in [rows[0]["key"], rows[0]["handle"], events[0]["key"],
              events[0]["handle"], events[0]["message-id"]]:
        check(len(v.encode()) <= 200, "a stored value of %d bytes"
              % len(v.encode()))
        check(not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in v),
              "control characters stored: %r" % v[:80])

    old_log_entry(os.path.join(u.home, ".dovecot.loopguard"),
                  b"old\nforged\trow\x1b]0;pwned\x07" + b"O" * 5000)
    for command, nrows, fields in (("list", 1, 8), ("log", 2, 9)):
        for fmt in ("tab", "flow", "table"):
            rc, out, err = ctx.dc.loopguard(command, u, fmt=fmt)
            what = "doveadm -f %s loopguard %s" % (fmt, command)
            check(rc == 0 and not BAD_LOG_RE.search(err),
                  "%s: exit %d, stderr %s" % (what, rc, err.strip()))
            headers = 0 if fmt == "flow" else 1
            check_safe_text(what, out, nrows + headers, fields,
                            "\t" if fmt == "tab" else None)
        data, _ = lg(ctx, command, u)
        check(len(data) == nrows, "-f json loopguard %s: %d rows"
              % (command, len(data)))
        for row in data:
            for k, v in row.items():
                if not isinstance(v, str):
                    continue
                check(len(v.encode()) <= 200, "-f json loopguard %s: %s "
                      "of %d bytes" % (command, k, len(v.encode())))
                check(not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f
                              for c in v), "-f json loopguard %s: control "
                      "characters in %s: %r" % (command, k, v[:80]))


@scenario("doveadm-all")
def s_doveadm_all(ctx):
    """12. doveadm loopguard list / log / purge -A (every user the userdb
    lists: this scenario's and those of the scenarios before it).

    discard-loops.sieve for two users: "locked" gets 35 messages from
    flood@remote.test (30 stored, 5 discarded: a locked key, 5 ratelimit
    events), "looped" 1 message from a person and 2 carrying its own
    address in X-Loop (2 looptest events, discarded).  "nostore" has a home
    but no store, "nohome" not even a home directory.
    `list -A -f json`: exit 0; every row starts with a username column
    naming a user of the userdb whose store exists; locked's rows are
    exactly `list -u locked`'s (one key, flood@remote.test, count 31,
    locked), looped's exactly its own; none for nostore and nohome.
    `log -A`: exit 0; for locked and looped exactly their `log -u` events
    (5 ratelimit, 2 looptest), each tagged with its user; none for the
    others without a store.  `purge -A` with doveadm's clock 2 days ahead:
    exit 0, one row for every user of the userdb, each once; locked purged
    36 (1 key + 35 fingerprints), looped 4 (1 key + 3 fingerprints),
    nostore and nohome 0; then `list -A` shows neither locked nor looped.
    No "Error:" in the Dovecot log or on stderr after the -A calls, and
    still no store and no home created for nostore and nohome."""
    locked = ctx.user("locked", example("discard-loops.sieve"))
    looped = ctx.user("looped", example("discard-loops.sieve"))
    nostore = ctx.user("nostore", example("discard-loops.sieve"))
    nohome = ctx.dc.add_user(ctx.address("nohome"))  # home never created
    flood = flood_msgs(locked, 35)
    all_250(ctx.dc.deliver_many([(m.env_from, locked.address, bytes(m))
                                 for m in flood]), "flood")
    same_ids(locked.stored(), [m.msgid for m in flood[:30]], "locked")
    person = Message("Pat <pat@remote.test>", looped.address, "Hello")
    loops = [Message("Looper <loop@remote.test>", looped.address,
                     "Looping %d" % i, headers=[("X-Loop", looped.address)])
             for i in range(2)]
    all_250([looped.deliver(m) for m in [person] + loops], "looped")
    same_ids(looped.stored(), [person.msgid], "looped")
    with_store = [u.address for u in (locked, looped)]
    without = [nostore.address, nohome]

    def by_user(rows, what):
        """rows of an -A call -> {username: [row without username]}, after
        checking that each row starts with a username of the userdb."""
        out = {}
        for r in rows:
            check(list(r)[:1] == ["username"],
                  "%s: row without a leading username column: %r"
                  % (what, r))
            user = r["username"]
            check(user in ctx.dc.users, "%s: row for %r, who is not in the "
                  "userdb: %r" % (what, user, r))
            out.setdefault(user, []).append(
                {k: v for k, v in r.items() if k != "username"})
        return out

    def all_users(command, *args, faketime=None):
        """lg() with -A (exit 0, a JSON list, no error on stderr, where
        doveadm logs) and no "Error:" in the new part of the Dovecot log
        (auth's user listing and lookups) -> by_user()."""
        start = ctx.dc.log_offset()
        try:
            rows, _ = lg(ctx, command, None, *args, faketime=faketime)
        finally:
            bad = [l for l in ctx.dc.log_lines(start) if "Error:" in l]
            check(not bad, "Dovecot log after loopguard %s -A: %s"
                  % (command, " || ".join(bad[:3])))
        return by_user(rows, "%s -A" % command)

    users = all_users("list")
    for user in users:
        check(os.path.exists(os.path.join(ctx.dc.users[user],
                                          ".dovecot.loopguard")),
              "list -A: rows for %s, who has no store: %r"
              % (user, users[user]))
    for user in without:
        check(user not in users, "list -A: rows for %s (no store): %r"
              % (user, users.get(user)))
    for u in (locked, looped):
        alone, _ = lg(ctx, "list", u)
        check(alone and users.get(u.address) == alone,
              "list -A: rows for %s are %r, list -u says %r"
              % (u.address, users.get(u.address), alone))
    r = users[locked.address]
    check(len(r) == 1 and r[0]["key"] == "flood@remote.test"
          and r[0]["count"] == 31 and r[0]["locked-until"] != "-",
          "list -A: %s should have one locked key flood@remote.test, count "
          "31: %r" % (locked.address, r))
    check(all(x["locked-until"] == "-" for x in users[looped.address]),
          "list -A: %s has a locked key: %r"
          % (looped.address, users[looped.address]))

    # unblock is one user's business: -A is refused and nothing changes
    _, err = lg(ctx, "unblock", None, "flood@remote.test", rc=64)
    check("takes one user" in err, "unblock -A: no clear refusal on "
          "stderr: %s" % err.strip())
    alone, _ = lg(ctx, "list", locked)
    check(alone == r, "unblock -A changed %s's keys: %r" %
          (locked.address, alone))

    events = all_users("log")
    for user in without:
        check(user not in events, "log -A: events for %s (no store): %r"
              % (user, events.get(user)))
    for u, test, n in ((locked, "ratelimit", 5), (looped, "looptest", 2)):
        alone, _ = lg(ctx, "log", u)
        got = events.get(u.address, [])
        check(len(got) == n and all(e["test"] == test for e in got),
              "log -A: %s has %d events (%r), expected %d %s events"
              % (u.address, len(got), [e["test"] for e in got], n, test))
        check(got == alone, "log -A: events for %s differ from log -u: "
              "%r vs %r" % (u.address, got[:1], alone[:1]))
    check([e["message-id"] for e in events[locked.address]]
          == [m.msgid for m in flood[30:]]
          and [e["message-id"] for e in events[looped.address]]
          == [m.msgid for m in loops],
          "log -A: events carry the wrong Message-IDs")

    purged = all_users("purge", faketime="+2d")
    check(sorted(purged) == sorted(ctx.dc.users)
          and all(len(v) == 1 for v in purged.values()),
          "purge -A: expected one row for each of the %d users of the "
          "userdb, got rows for %d users: %r (missing %s)"
          % (len(ctx.dc.users), len(purged),
             {u: len(v) for u, v in purged.items() if len(v) != 1},
             sorted(set(ctx.dc.users) - set(purged))[:3]))
    want = {locked.address: 36, looped.address: 4, nostore.address: 0,
            nohome: 0}
    got = {u: purged[u][0]["purged"] for u in want}
    check(got == want, "purge -A (2 days later): purged %r, expected %r"
          % (got, want))
    users = all_users("list")
    check(not set(with_store) & set(users),
          "list -A after purge -A still lists %r"
          % {u: users[u] for u in with_store if u in users})

    check(os.listdir(nostore.home) == [".dovecot.sieve"],
          "doveadm -A left files in a home without a store: %r"
          % os.listdir(nostore.home))
    check(not os.path.exists(ctx.dc.users[nohome]),
          "doveadm -A created a home for %s" % nohome)


# ---------------------------------------------------------------------------
# The admin panels' vacation rules, and hand-kept lists, with loopguard.

@scenario("admin-panel")
def s_admin_panel(ctx):
    """14. doc/examples/admin-panel-vacation.sieve next to the control
    scripts/panel-vacation.sieve (the header tests panels generate today:
    List-Id, List-Unsubscribe, no-reply in From or Sender, then vacation).

    Both answer a person once and do not answer a list post (List-Id), a
    newsletter (List-Unsubscribe only), From: no-reply@ with a VERP
    envelope sender, or another vacation's reply (Auto-Submitted, which
    Pigeonhole's vacation declines by itself).  Only the example leaves
    alone a vendor auto-reply (X-Autoreply: yes), a no-reply envelope
    sender behind a friendly From, and a delivery report relayed with a
    real envelope sender: the control answers each (1 reply each), the
    example none.  A VERP robot: the example answers it exactly 3 times
    (ratelimit :count 3 per From) and the storm ends; the control is still
    answering at the 20-round bound."""
    ex = ctx.user("example", example("admin-panel-vacation.sieve"))
    ctl = ctx.user("control", test_script("panel-vacation.sieve"))

    def replies_to(user, msg):
        code = user.deliver(msg)
        check(code == 250, "%s: LMTP reply %d" % (msg.subject, code))
        check(msg.msgid in user.stored(), "%s: not stored for %s"
              % (msg.subject, user.address))
        return len(ctx.new_captures())

    def both(make, want_ex, want_ctl):
        got = (replies_to(ex, make(ex)), replies_to(ctl, make(ctl)))
        check(got == (want_ex, want_ctl),
              "%s: example/control sent %d/%d replies, expected %d/%d"
              % (make(ex).subject, got[0], got[1], want_ex, want_ctl))

    both(lambda u: Message("Dana <dana@remote.test>", u.address, "Lunch"),
         1, 1)
    both(lambda u: Message("List <list@lists.remote.test>", u.address,
                           "[users] a post", env_from="users-bounces@lists"
                           ".remote.test",
                           headers=[("List-Id", "<users.lists.remote.test>")]),
         0, 0)
    both(lambda u: Message("Shop <news@shop.remote.test>", u.address,
                           "Our offers", env_from="bounce-7@shop.remote.test",
                           headers=[("List-Unsubscribe",
                                     "<mailto:unsub@shop.remote.test>")]),
         0, 0)
    both(lambda u: Message("Service <no-reply@svc.remote.test>", u.address,
                           "Your invoice",
                           env_from="b-4711@bounces.svc.remote.test"),
         0, 0)
    both(lambda u: Message("Erik <erik@remote.test>", u.address,
                           "Auto: Lunch", headers=[("Auto-Submitted",
                                                    "auto-replied")]),
         0, 0)
    both(lambda u: Message("Fay <fay@remote.test>", u.address,
                           "Away: Lunch", headers=[("X-Autoreply", "yes")]),
         0, 1)
    both(lambda u: Message("Service <service@svc.remote.test>", u.address,
                           "Your parcel", env_from="noreply@svc.remote.test"),
         0, 1)
    both(lambda u: dsn("Mail Delivery System <relay@remote.test>", u.address,
                       env_from="relay@remote.test"), 0, 1)

    r = robot_storm(ctx, ctl, verp=True, bound=20)
    check(not r["ended"] and len(r["replies"]) == 20,
          "control: expected the VERP robot to be answered up to the "
          "20-round bound, got %d replies, ended=%s"
          % (len(r["replies"]), r["ended"]))
    r = robot_storm(ctx, ex, verp=True, bound=20)
    check(r["ended"] and len(r["replies"]) == 3 and not r["other"],
          "example: expected exactly 3 replies to the VERP robot and the "
          "storm to end, got %d, ended=%s, other mail %r"
          % (len(r["replies"]), r["ended"], r["other"]))
    fired = ctx.fired("ratelimit", ex)
    check(len(fired) == 1 and fired[0]["handle"] == "vacation"
          and fired[0]["key"] == ROBOT,
          "expected one 'ratelimit fired' line (handle vacation, key %s), "
          "got %r" % (ROBOT, fired))


@scenario("allow-and-block")
def s_allow_and_block(ctx):
    """15. doc/examples/allow-and-block.sieve: a block list (addresses and
    a domain, in From, Sender or the envelope), then looptest, then an
    allow-list by regular expression on the envelope sender, then
    ratelimit :count 20 :seconds 600 :lock 1800 for everybody else.

    Blocked, not stored, without any loopguard firing: From
    pest@annoying.example, Sender alerts@old-partner.example, From
    someone@junk-mailer.example, envelope sender bounce@junk-mailer.example
    with a harmless From.  30 messages from ci@build.partner.example
    (allowed by ^[^@]+@(.+\\.)?partner\\.example$) and 30 from
    monitoring+disk@example.org: all stored, never counted (no
    ratelimit line, no store record).  30 from
    ci@partner.example.attacker.example (not allowed: the expression is
    anchored): 20 stored, 10 discarded.  An allowed sender's message with
    the user's address in X-Loop is still discarded (looptest marker).
    A person: stored."""
    u = ctx.user("user", example("allow-and-block.sieve"))
    blocked = [
        Message("Pest <pest@annoying.example>", u.address, "Buy"),
        Message("Alerts <alerts@relay.remote.test>", u.address, "Alert",
                headers=[("Sender", "alerts@old-partner.example")]),
        Message("Someone <someone@junk-mailer.example>", u.address, "Hi"),
        Message("Friendly <friendly@remote.test>", u.address, "Offer",
                env_from="bounce@junk-mailer.example"),
    ]
    all_250([u.deliver(m) for m in blocked], "blocked senders")
    same_ids(u.stored(), [], "blocked senders")
    check(not ctx.fired(user=u), "loopguard fired for blocked senders: %r"
          % ctx.fired(user=u))

    allowed = (flood_msgs(u, 30, sender="ci@build.partner.example",
                          tag="build")
               + flood_msgs(u, 30, sender="monitoring+disk@example.org",
                            tag="disk"))
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in allowed]), "allowed senders")
    same_ids(u.stored(), [m.msgid for m in allowed], "allowed senders")
    check(not ctx.fired(user=u), "loopguard fired for allowed senders: %r"
          % ctx.fired(user=u)[:2])
    rc, rows, err = ctx.dc.loopguard("list", u)
    check(rc == 0 and not rows, "allowed senders were counted: list -u "
          "exit %d: %r %s" % (rc, rows, err.strip()))

    lookalike = flood_msgs(u, 30, sender="ci@partner.example.attacker"
                           ".example", tag="lookalike")
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in lookalike]), "look-alike sender")
    loop = Message("CI <ci@build.partner.example>", u.address, "Looping",
                   headers=[("X-Loop", u.address)])
    person = Message("Pat <pat@remote.test>", u.address, "Hello")
    all_250([u.deliver(loop), u.deliver(person)], "loop and person")
    same_ids(u.stored(), [m.msgid for m in allowed + lookalike[:20]]
             + [person.msgid], "after the look-alike flood")
    fired = ctx.fired("ratelimit", u)
    check(len(fired) == 10 and all(f["key"] == lookalike[0].env_from
                                   for f in fired),
          "expected 10 'ratelimit fired' lines for the look-alike, got %r"
          % [(f["key"], f["count"]) for f in fired])
    looped = ctx.fired("looptest", u)
    check(len(looped) == 1 and "marker" in looped[0]["reasons"].split(),
          "expected one 'looptest fired ... marker' line, got %r" % looped)


# ---------------------------------------------------------------------------
# Metrics: the metric blocks of doc/example-config/90-sieve-loopguard.conf,
# used verbatim in the e2e config, counted with doveadm stats dump.

def stable_stats(ctx, want=None, timeout=5):
    """Reads doveadm stats dump until it stops changing (the LMTP processes
    send their events to the stats process asynchronously), or until it
    matches `want` (then reads once more, later, to see it stays)."""
    deadline = time.time() + timeout
    prev = ctx.dc.stats()
    while time.time() < deadline:
        time.sleep(0.2)
        cur = ctx.dc.stats()
        if want is not None and all(cur.get(k) == v
                                    for k, v in want.items()):
            time.sleep(0.3)
            return ctx.dc.stats()
        if want is None and cur == prev:
            return cur
        prev = cur
    return prev


@scenario("metrics")
def s_metrics(ctx):
    """13. Dovecot metrics (doveadm stats dump) count the events.

    The e2e config has the two metric blocks of doc/example-config/
    90-sieve-loopguard.conf, uncommented (ratelimit grouped by handle,
    looptest by check).
    40 messages from one sender to discard-loops.sieve -> 10 over the
    limit; 3 messages carrying the user's address in X-Loop ->
    3 looptest firings (marker); 7 messages from one person to
    protect-vacation.sieve (:handle "vacation" :count 5) -> 2.  Exactly:
    sieve_loopguard_ratelimit +12, its sub-metrics
    sieve_loopguard_ratelimit_vacation +2 and sieve_loopguard_ratelimit_
    (the default, empty handle) +10, sieve_loopguard_looptest +3 and its
    sub-metric by check sieve_loopguard_looptest_marker +3."""
    names = ("sieve_loopguard_ratelimit", "sieve_loopguard_looptest")
    check(all(n in ctx.dc.metrics for n in names),
          "doc/example-config/90-sieve-loopguard.conf has no commented "
          "metric block for %s" % [n for n in names
                                   if n not in ctx.dc.metrics])
    base = stable_stats(ctx)
    check(all(n in base for n in names),
          "doveadm stats dump does not show %r: %r" % (names, base))

    u = ctx.user("user", example("discard-loops.sieve"))
    msgs = flood_msgs(u, 40)
    loops = [Message("Looper <loop%d@remote.test>" % i, u.address,
                     "Looping %d" % i, headers=[("X-Loop", u.address)])
             for i in range(3)]
    all_250(ctx.dc.deliver_many([(m.env_from, u.address, bytes(m))
                                 for m in msgs + loops]), "discard-loops")
    same_ids(u.stored(), [m.msgid for m in msgs[:30]], "discard-loops user")
    v = ctx.user("vacation", example("protect-vacation.sieve"))
    pm = [Message("Pat <pat@remote.test>", v.address, "Question %d" % i)
          for i in range(7)]
    all_250([v.deliver(m) for m in pm], "protect-vacation")
    check(len(ctx.fired("ratelimit", u)) == 10
          and len(ctx.fired("looptest", u)) == 3
          and len(ctx.fired("ratelimit", v)) == 2,
          "log: %d ratelimit + %d looptest firings for the flood user, %d "
          "for the vacation user; expected 10, 3, 2"
          % (len(ctx.fired("ratelimit", u)), len(ctx.fired("looptest", u)),
             len(ctx.fired("ratelimit", v))))

    delta = {"sieve_loopguard_ratelimit": 12,
             "sieve_loopguard_ratelimit_vacation": 2,
             "sieve_loopguard_ratelimit_": 10,
             "sieve_loopguard_looptest": 3,
             "sieve_loopguard_looptest_marker": 3}
    want = {k: base.get(k, 0) + d for k, d in delta.items()}
    got = stable_stats(ctx, want)
    diff = {k: got.get(k, 0) - base.get(k, 0) for k in delta}
    check(diff == delta, "metric counts went up by %r, expected %r"
          % (diff, delta))


# ---------------------------------------------------------------------------
# Metrics where admins look: the stats process's OpenMetrics page.

LT = "dovecot_sieve_loopguard_looptest"
RL = "dovecot_sieve_loopguard_ratelimit"


def loopguard_series(scrape):
    return {k: v for k, v in scrape.items()
            if k[0].startswith("dovecot_sieve_loopguard_")
            and not k[0].endswith(("_duration_seconds_total",
                                   "_duration_seconds_sum"))}


def stable_openmetrics(ctx, want, base, timeout=5):
    """Scrapes until every series in `want` went up by its count since
    `base` (events reach the stats process asynchronously), then once more
    a little later, to see it stays."""
    deadline = time.time() + timeout
    while True:
        cur = ctx.dc.openmetrics()
        if (all(cur.get(k, 0) - base.get(k, 0) == d for k, d in want.items())
                or time.time() > deadline):
            time.sleep(0.3)
            return ctx.dc.openmetrics()
        time.sleep(0.1)


@scenario("openmetrics")
def s_openmetrics(ctx):
    """16. The metric blocks of the example config, served by Dovecot's
    stats HTTP listener on 127.0.0.1 in OpenMetrics format, after a storm
    delivered in 8 rounds.  Each round: 10 messages from one flooder
    (doc/examples/discard-loops.sieve, :count 30), 1 with the user's address
    in X-Loop, 1 from a person to protect-vacation.sieve (:handle
    "vacation" :count 5), and every second round a null-sender bounce to
    the vacation user.  The page is scraped after each round; in the end
    the series went up by exactly:
        dovecot_sieve_loopguard_ratelimit_count                 53
        dovecot_sieve_loopguard_ratelimit_total{handle=""}       50
        dovecot_sieve_loopguard_ratelimit_total{handle="vacation"} 3
        dovecot_sieve_loopguard_looptest_count                  12
        dovecot_sieve_loopguard_looptest_total{check="marker"}    8
        dovecot_sieve_loopguard_looptest_total{check="bounce"}    4
        dovecot_sieve_loopguard_looptest_total{check="system"}    4
    (the bounces come from MAILER-DAEMON), and every check series went up by as many firings as the log lines
    name that check.  No loopguard series carries a label other than check
    or handle (never one per sender), although the 8 loop messages came
    from 8 senders.  LG_OPENMETRICS_OUT=FILE keeps the scrapes as JSON
    (scripts/dashboard-png.sh draws doc/grafana/ from them)."""
    u = ctx.user("flooded", example("discard-loops.sieve"))
    v = ctx.user("vacation", example("protect-vacation.sieve"))
    base = ctx.dc.openmetrics()
    t0 = time.time()
    scrapes = [(0.0, loopguard_series(base))]
    flood = flood_msgs(u, 80)
    for r in range(8):
        jobs = [(m.env_from, u.address, bytes(m))
                for m in flood[r * 10:(r + 1) * 10]]
        loop = Message("Looper <loop%d@remote.test>" % r, u.address,
                       "Looping %d" % r, headers=[("X-Loop", u.address)])
        person = Message("Pat <pat@remote.test>", v.address,
                         "Question %d" % r)
        jobs += [(loop.env_from, u.address, bytes(loop)),
                 (person.env_from, v.address, bytes(person))]
        if r % 2 == 1:
            b = dsn("Mail Delivery System <MAILER-DAEMON@remote.test>",
                    v.address, env_from="",
                    original_to="gone%d@remote.test" % r)
            jobs.append(("", v.address, bytes(b)))
        all_250(ctx.dc.deliver_many(jobs), "round %d" % (r + 1))
        time.sleep(0.2)
        scrapes.append((time.time() - t0,
                        loopguard_series(ctx.dc.openmetrics())))

    want = {(RL + "_count", ()): 53,
            (RL + "_total", (("handle", ""),)): 50,
            (RL + "_total", (("handle", "vacation"),)): 3,
            (LT + "_count", ()): 12,
            (LT + "_total", (("check", "marker"),)): 8,
            (LT + "_total", (("check", "bounce"),)): 4,
            (LT + "_total", (("check", "system"),)): 4}
    for f in ctx.fired("looptest"):
        for c in f["reasons"].split():
            k = (LT + "_total", (("check", c),))
            if k not in want:
                want[k] = sum(1 for g in ctx.fired("looptest")
                              if c in g["reasons"].split())
    got = stable_openmetrics(ctx, want, base)
    scrapes.append((time.time() - t0, loopguard_series(got)))
    out = os.environ.get("LG_OPENMETRICS_OUT")
    if out:
        with open(out, "w") as f:
            json.dump([{"t": t, "series": [
                {"name": k[0], "labels": dict(k[1]), "value": v}
                for k, v in sorted(s.items())]} for t, s in scrapes],
                f, indent=1)
    diff = {k: got.get(k, 0) - base.get(k, 0) for k in want}
    check(diff == want, "OpenMetrics series went up by %r, expected %r"
          % (diff, want))
    labels = {name for (_, ls) in loopguard_series(got) for name, _ in ls}
    check(labels <= {"check", "handle"},
          "loopguard series carry labels %r: only check and handle are "
          "bounded" % sorted(labels))


# ---------------------------------------------------------------------------
# ManageSieve: what a client (Roundcube, Thunderbird's add-on, an admin
# panel) does, against Dovecot's managesieve service.

def managesieve_dovecot(ctx, label, extra=""):
    """A second Dovecot, with ManageSieve, beside the scenarios' own."""
    dc = Dovecot(os.path.join(ctx.dc.workdir, label), ctx.dc.builddir,
                 managesieve=True, extra_plugin=extra,
                 instance="loopguard-e2e-" + label)
    dc.start()
    return dc


def managesieve_login(dc, user):
    c = ManageSieveClient(dc.host, dc.managesieve_port)
    r = c.authenticate_plain(user.address, PASSWORD)
    check(r.ok, "AUTHENTICATE PLAIN as %s: %r" % (user.address, r))
    return c


def no_log_errors(dc, what):
    bad = [l for l in dc.log_lines() if BAD_LOG_RE.search(l)]
    check(not bad, "%s: Dovecot log has errors: %s"
          % (what, " || ".join(bad[:3])))


def refused(r, line, words, what):
    """r is a NO whose message names `line` and contains `words`."""
    check(not r.ok and r.kind == "NO", "%s: expected NO, got %r" % (what, r))
    check(re.search(r"\bline %d\b" % line, r.text) is not None
          and all(w in r.text for w in words),
          "%s: the error does not name line %d and %r: %r"
          % (what, line, words, r.text))


BAD_SCRIPTS = {
    "unknown-check": ('require "vnd.loopguard.looptest";\n'
                      'if looptest :checks ["loop", "nosuch"] {\n'
                      '    discard;\n}\n', 2, ["nosuch"]),
    "count-string": ('require "vnd.loopguard.ratelimit";\n'
                     'if ratelimit :count "many" {\n'
                     '    discard;\n}\n', 2, [":count"]),
}


def ms_effects(ctx, dc, u):
    """For each example script: a delivery that shows it ran ->
    {file name: function(delivering) raising Failure}."""
    seen = set()

    def caps():
        return dc.captures(seen)

    def person(tag, subject="Hello"):
        return Message("%s <%s@remote.test>" % (tag.title(), tag), u.address,
                       subject)

    def deliver(m):
        check(u.deliver(m) == 250, "%s: LMTP error" % m.subject)

    def discard_loops():
        m = Message("Looper <looper@remote.test>", u.address, "Looping",
                    headers=[("X-Loop", u.address)])
        p = person("dl")
        deliver(m)
        deliver(p)
        check(m.msgid not in u.stored() and p.msgid in u.stored(),
              "the looping message was not discarded, or the person's lost")

    def vacation_reply(tag, text):
        def run():
            deliver(person(tag))
            c = caps()
            check(len(c) == 1 and c[0].env_to == ["%s@remote.test" % tag]
                  and text in c[0].body_text(),
                  "expected one reply saying %r to %s@remote.test, got %r"
                  % (text, tag, c))
        return run

    def forward():
        deliver(person("fw"))
        c = caps()
        check(len(c) == 1 and c[0].env_to == ["forward-target@example.net"],
              "expected one redirect to forward-target@example.net, got %r"
              % c)

    def thread_flood():
        ms = [Message("Tracker <tracker@remote.test>", u.address,
                      "Ticket #9 updated") for _ in range(3)]
        for m in ms[1:]:
            m.headers = [("In-Reply-To", ms[0].msgid),
                         ("References", ms[0].msgid)]
        for m in ms:
            deliver(m)
        check(u.stored("Muted") == [ms[2].msgid],
              "Muted holds %r, expected the thread's third message"
              % u.stored("Muted"))

    def allow_and_block():
        m = Message("Pest <pest@annoying.example>", u.address, "Buy")
        p = person("ab")
        deliver(m)
        deliver(p)
        check(m.msgid not in u.stored() and p.msgid in u.stored(),
              "the blocked sender's message was stored, or the person's "
              "lost")

    return {
        "discard-loops.sieve": discard_loops,
        "protect-vacation.sieve": vacation_reply(
            "pv", "I am away until Monday"),
        "helpdesk.sieve": vacation_reply("hd", "Thank you for contacting"),
        "admin-panel-vacation.sieve": vacation_reply(
            "ap", "I am out of the office"),
        "forward.sieve": forward,
        "thread-flood.sieve": thread_flood,
        "allow-and-block.sieve": allow_and_block,
    }


@scenario("managesieve")
def s_managesieve(ctx):
    """17. A ManageSieve client against Dovecot's managesieve service
    (tests/e2e/managesieve.py, RFC 5804) on 127.0.0.1.

    AUTHENTICATE PLAIN succeeds; CAPABILITY's SIEVE line lists
    vnd.loopguard.looptest and vnd.loopguard.ratelimit.  Every script in
    doc/examples passes CHECKSCRIPT and PUTSCRIPT verbatim (GETSCRIPT gives
    it back unchanged).  Then, one after another, each is made active with
    SETACTIVE (LISTSCRIPTS shows it as the only active one) and the next
    LMTP delivery shows it ran: discard-loops drops a message with the
    user's address in X-Loop, protect-vacation, helpdesk and
    admin-panel-vacation send their reply, forward redirects to
    forward-target@example.net, thread-flood files a thread's third message
    into Muted, allow-and-block drops a blocked sender.  An example without
    such a check here fails the scenario.  A script with an unknown check
    name, and one with :count "many", are refused with NO by both
    CHECKSCRIPT and PUTSCRIPT, the error naming line 2; neither is stored."""
    dc = managesieve_dovecot(ctx, "managesieve")
    try:
        u = dc.user("ms-user@%s" % DOMAIN)
        c = managesieve_login(dc, u)
        ext = c.sieve_extensions()
        check("vnd.loopguard.looptest" in ext
              and "vnd.loopguard.ratelimit" in ext,
              "SIEVE capability lacks the loopguard extensions: %r" % ext)
        check(c.capability() == c.capabilities, "CAPABILITY differs from "
              "the capabilities sent after AUTHENTICATE")

        effects = ms_effects(ctx, dc, u)
        names = sorted(n for n in os.listdir(EXAMPLES)
                       if n.endswith(".sieve"))
        untested = [n for n in names if n not in effects]
        check(not untested, "examples without a ManageSieve check: %r"
              % untested)
        for n in names:
            with open(example(n)) as f:
                text = f.read()
            r = c.checkscript(text)
            check(r.ok, "CHECKSCRIPT %s: %r" % (n, r))
            r = c.putscript(n[:-len(".sieve")], text)
            check(r.ok, "PUTSCRIPT %s: %r" % (n, r))
            check(c.getscript(n[:-len(".sieve")]) == text,
                  "GETSCRIPT %s does not give the script back" % n)
        for n in names:
            name = n[:-len(".sieve")]
            r = c.setactive(name)
            check(r.ok, "SETACTIVE %s: %r" % (name, r))
            active = [s for s, a in c.listscripts() if a]
            check(active == [name], "LISTSCRIPTS: active %r, expected %s"
                  % (active, name))
            try:
                effects[n]()
            except Failure as e:
                raise Failure("%s, active over ManageSieve: %s" % (n, e))

        for name, (text, line, words) in sorted(BAD_SCRIPTS.items()):
            refused(c.checkscript(text), line, words, "CHECKSCRIPT " + name)
            refused(c.putscript(name, text), line, words,
                    "PUTSCRIPT " + name)
        stored = [s for s, _ in c.listscripts()]
        check(not set(BAD_SCRIPTS) & set(stored),
              "refused scripts were stored: %r" % stored)
        c.logout()
        no_log_errors(dc, "managesieve Dovecot")
    finally:
        dc.stop()


@scenario("managesieve-disabled")
def s_managesieve_disabled(ctx):
    """18. vnd.loopguard.looptest disabled through sieve_extensions (2.3:
    sieve_extensions = -vnd.loopguard.looptest; 2.4: set to no in the
    sieve_extensions list), in a Dovecot of its own: CAPABILITY's SIEVE
    line lacks vnd.loopguard.looptest and still lists
    vnd.loopguard.ratelimit; discard-loops.sieve is refused by CHECKSCRIPT
    and PUTSCRIPT with NO naming line 25 (its require) and the extension;
    the unknown-check script too (line 1); thread-flood.sieve, which needs
    only ratelimit, is accepted, activated and files a thread's third
    message into Muted."""
    if DOVECOT_24:
        extra = "sieve_extensions {\n  vnd.loopguard.looptest = no\n}\n"
    else:
        extra = "  sieve_extensions = -vnd.loopguard.looptest\n"
    dc = managesieve_dovecot(ctx, "managesieve-off", extra)
    try:
        u = dc.user("ms-off@%s" % DOMAIN)
        c = managesieve_login(dc, u)
        ext = c.sieve_extensions()
        check("vnd.loopguard.looptest" not in ext
              and "vnd.loopguard.ratelimit" in ext,
              "SIEVE capability with looptest disabled: %r" % ext)
        with open(example("discard-loops.sieve")) as f:
            text = f.read()
        line = text[:re.search(r"^require", text, re.M).start()].count(
            "\n") + 1
        for cmd in (c.checkscript, lambda t: c.putscript("dl", t)):
            refused(cmd(text), line, ["vnd.loopguard.looptest"],
                    "discard-loops.sieve without looptest")
        text, _, _ = BAD_SCRIPTS["unknown-check"]
        refused(c.putscript("unknown-check", text), 1,
                ["vnd.loopguard.looptest"], "unknown-check without looptest")
        with open(example("thread-flood.sieve")) as f:
            r = c.putscript("tf", f.read())
        check(r.ok, "PUTSCRIPT thread-flood.sieve: %r" % r)
        check(c.setactive("tf").ok, "SETACTIVE tf failed")
        check([s for s, _ in c.listscripts()] == ["tf"],
              "LISTSCRIPTS: %r" % c.listscripts())
        c.logout()
        ms_effects(ctx, dc, u)["thread-flood.sieve"]()
        no_log_errors(dc, "managesieve Dovecot without looptest")
    finally:
        dc.stop()


# ---------------------------------------------------------------------------
# Flushes: what a delivery costs on a disk where every flush is slow.

# Flushes of one commit of the store: LMDB fdatasyncs the data, then writes
# the meta page through a descriptor opened O_DSYNC -- or, with
# sieve_loopguard_sync = no (MDB_NOMETASYNC), through the ordinary one.
COMMIT_FLUSHES = {"yes": 2, "no": 1}


def delivery_flushes(dc, flushes, user, msg):
    """Delivers msg to user -> {"store": n, "mail": n, "other": [record]}:
    the flushes of all processes during the delivery, on the user's
    ~/.dovecot.loopguard, in the user's Maildir and anywhere else."""
    since = flushes.offset()
    check(user.deliver(msg) == 250, "%s: delivery failed" % user.address)
    store = os.path.join(user.home, ".dovecot.loopguard")
    maildir = os.path.join(user.home, "Maildir") + "/"
    out = {"store": 0, "mail": 0, "other": []}
    for rec in flushes.records(since):
        if rec[2] == store:
            out["store"] += 1
        elif rec[2].startswith(maildir):
            out["mail"] += 1
        else:
            out["other"].append(rec)
    return out


@scenario("flushes")
def s_flushes(ctx):
    """One commit per delivery.  An own Dovecot with bench/flush-shim.so in
    every process (no delay) records every flush.  For `keep` and every
    doc/examples script, with sieve_loopguard_sync yes and no: one warm-up
    delivery, then 4 ordinary messages (2 senders, twice each), counted one
    by one.  Every delivery: exactly COMMIT_FLUSHES on ~/.dovecot.loopguard
    for an example (2 with sync yes, 1 with no), none for keep; no flush
    outside the user's Maildir and store; the examples that keep the mail
    make as many Maildir flushes as keep does (forward.sieve none), so the
    extra over keep is exactly one commit."""
    d = os.path.join(ctx.dc.workdir, "flushes")
    flushes = FlushLog(os.path.join(d, "flush"), ctx.dc.builddir)
    dc = Dovecot(d, ctx.dc.builddir, metrics=False,
                 instance="loopguard-e2e-flushes", env=flushes.env())
    names = ["keep"] + sorted(n for n in os.listdir(EXAMPLES)
                              if n.endswith(".sieve"))
    users = {}
    for i, name in enumerate(names):
        for sync in COMMIT_FLUSHES:
            fields = {"sieve_loopguard_sync": sync}
            users[(name, sync)] = dc.user(
                "flushes-%d-%s" % (i, sync),
                None if name == "keep" else example(name),
                script="keep;\n" if name == "keep" else None,
                fields=fields)
    dc.start()
    try:
        seen = {}
        for (name, sync), u in users.items():
            msgs = [Message("Person %d <person%d@remote.test>" % (j, j),
                            u.address, "Question %d" % k)
                    for k, j in enumerate([9, 1, 2, 1, 2])]
            delivery_flushes(dc, flushes, u, msgs[0])
            seen[(name, sync)] = [delivery_flushes(dc, flushes, u, m)
                                  for m in msgs[1:]]
        for (name, sync), got in seen.items():
            what = "%s, sieve_loopguard_sync = %s" % (name, sync)
            keep = seen[("keep", sync)]
            want = 0 if name == "keep" else COMMIT_FLUSHES[sync]
            for k, f in enumerate(got):
                check(not f["other"], "%s, delivery %d: flushes outside "
                      "the Maildir and the store: %r"
                      % (what, k + 1, f["other"][:3]))
                check(f["store"] == want, "%s, delivery %d: %d flushes of "
                      "the store, expected %d (one commit)"
                      % (what, k + 1, f["store"], want))
                mail = 0 if name == "forward.sieve" else keep[k]["mail"]
                check(f["mail"] == mail, "%s, delivery %d: %d Maildir "
                      "flushes, keep made %d"
                      % (what, k + 1, f["mail"], mail))
            check(sum(f["mail"] for f in keep) > 0,
                  "keep: no Maildir flush recorded; is the shim loaded?")
        ctx.facts["flushes"] = {k: [(f["store"], f["mail"]) for f in v]
                                for k, v in seen.items()}
        no_log_errors(dc, "flushes Dovecot")
    finally:
        dc.stop()


# ---------------------------------------------------------------------------

def narrate(name, ctx):
    f = ctx.facts
    if name == "pingpong":
        print("  Ping-pong: a ticket robot that answers every mail, using a "
              "new bounce address each time,")
        print("  writes to %s, who is on vacation "
              "(doc/examples/protect-vacation.sieve)." % f["user"])
        print("    Without loopguard (plain vacation): %d replies, and the "
              "storm was still going when the test stopped it."
              % f["control_replies"])
        print("    With protect-vacation.sieve:")
        print("      messages in from the robot: %d" % f["msgs_in"])
        print("      delivered to the inbox:     %d" % f["stored"])
        print("      discarded:                  %d" % f["discarded"])
        print("      vacation replies sent:      %d" % f["replies"])
        print("      replies suppressed:         %d  -> the robot got no "
              "answer, so it stopped" % f["suppressed"])
        for x in f["fired"]:
            print("      why: message no. %s from %s within %ss is over the "
                  "limit of 5 (ratelimit :handle \"%s\")"
                  % (x["count"], x["key"], x["window"], x["handle"]))
            print("      blocked: nobody -- this rule has no :lock; the "
                  "robot gets answers again once fewer")
            print("               than 5 of its messages fall within the "
                  "last hour (from the Dovecot log)")
    elif name == "flood":
        print("  Flood: 200 messages from one sender to %s "
              "(doc/examples/discard-loops.sieve," % f["user"])
        print("  at most 30 per 5 minutes, then blocked for 15 minutes).")
        print("      messages in:  %d" % f["msgs_in"])
        print("      delivered:    %d" % f["stored"])
        print("      discarded:    %d" % f["discarded"])
        blocked = {}
        for x in f["fired"]:
            blocked[x["key"]] = x["locked"]
        for key, until in blocked.items():
            n = sum(1 for x in f["fired"] if x["key"] == key)
            print("      blocked: %s until %s" % (key, until))
            print("               (%d 'loopguard: ratelimit fired' lines in "
                  "the Dovecot log; the last one" % n)
            print("               sets the time: each message over the "
                  "limit pushes the lock further)")
        if "doveadm_list" in f:
            print("  What the administrator sees, `doveadm -f flow loopguard list "
                  "-u %s`:" % f["user"])
            for line in f["doveadm_list"].rstrip().splitlines():
                print("      " + line)
            print("  (`doveadm loopguard unblock -u %s flood@remote.test` "
                  "lets the sender in again.)" % f["user"])


# ---------------------------------------------------------------------------
# Redis: several backends share one store (scenarios.py --store redis).

# the administrator's line of a ratelimit test that found no state: one
# per delivery of discard-loops.sieve (looptest logs its own)
UNAVAILABLE = "ratelimit test: loopguard state unavailable, test is false:"


def redis_setting(redis, **kw):
    """The plugin settings line that points loopguard at `redis`."""
    return "  sieve_loopguard_db = %s\n" % redis.uri(**kw)


def other_fired(dc):
    return [m.groupdict() for m in (FIRED_RE.search(l)
                                   for l in dc.log_lines(0)) if m]


def check_user_keys(ctx, address):
    """Every key of the user carries its hash tag and an expiry."""
    keys = [k for k in ctx.redis.keys("*") if address in k]
    check(keys, "no Redis key for %s" % address)
    untagged = [k for k in keys if "{%s}" % address not in k]
    check(not untagged, "keys without the {user} hash tag: %r"
          % untagged[:3])
    no_ttl = [k for k in keys if ctx.redis.ttl(k) <= 0]
    check(not no_ttl, "keys that never expire: %r" % no_ttl[:3])
    return keys


@scenario("two-backends", ("redis",))
def s_two_backends(ctx):
    """R1. Two Dovecot instances ("backends") share one Redis.  16 LMTP
    sessions, 8 to each backend, deliver 200 distinct messages from one
    sender to one user under scripts/ratelimit-50.sieve (:count 50
    :seconds 3600).  A window's check and count are one atomic step in
    Redis, so exactly 50 are stored over both backends together, every
    reply is 250, the two logs hold 150 "ratelimit fired" lines between
    them, each backend delivered its share, and every key of the user has
    the {user} hash tag and an expiry."""
    other = Dovecot(os.path.join(ctx.dc.workdir, "backend-b"),
                    ctx.dc.builddir, instance="loopguard-e2e-b",
                    metrics=False, extra_plugin=ctx.dc.extra_plugin)
    other.start()
    try:
        ua = ctx.user("user", test_script("ratelimit-50.sieve"))
        ub = other.user(ua.address, test_script("ratelimit-50.sieve"))
        msgs = flood_msgs(ua, 200, sender="storm@remote.test", tag="storm")
        jobs = [(m.env_from, ua.address, bytes(m)) for m in msgs]
        codes = {}

        def run(dc, part, key):
            codes[key] = dc.deliver_many(part, parallel=8)

        threads = [threading.Thread(target=run, args=(ctx.dc, jobs[0::2],
                                                      "a")),
                   threading.Thread(target=run, args=(other, jobs[1::2],
                                                      "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        all_250(codes.get("a", [0]) + codes.get("b", [0]), "two backends")
        stored_a, stored_b = ua.stored(), ub.stored()
        stored = stored_a + stored_b
        check(len(stored) == 50, "expected exactly 50 stored over both "
              "backends, got %d (%d + %d)"
              % (len(stored), len(stored_a), len(stored_b)))
        check(len(set(stored)) == 50
              and set(stored) <= {m.msgid for m in msgs},
              "stored messages are not 50 distinct ones of those sent")
        # a delivery is answered before its log line reaches the log
        # file: wait for the lines, not for a fixed time
        deadline = time.monotonic() + 10
        while True:
            fired_a = ctx.fired("ratelimit", ua)
            fired_b = [f for f in other_fired(other)
                       if f["user"] == ua.address]
            if (len(fired_a) + len(fired_b) >= 150
                    or time.monotonic() > deadline):
                break
            time.sleep(0.1)
        check(len(fired_a) + len(fired_b) == 150,
              "expected 150 'ratelimit fired' lines, got %d + %d"
              % (len(fired_a), len(fired_b)))
        check(len(stored_a) + len(fired_a) == 100
              and len(stored_b) + len(fired_b) == 100,
              "each backend should have handled 100 messages: a %d+%d, "
              "b %d+%d" % (len(stored_a), len(fired_a), len(stored_b),
                           len(fired_b)))
        bad = [l for l in other.log_lines(0) if BAD_LOG_RE.search(l)]
        check(not bad, "backend b's log has errors: %s"
              % " || ".join(bad[:3]))
        check_user_keys(ctx, ua.address)
    finally:
        other.stop()


def unavailable_lines(ctx, user):
    return [l for l in ctx.log()
            if UNAVAILABLE in l and "(%s)" % user.address in l]


@scenario("redis-down", ("redis",))
def s_redis_down(ctx):
    """R2. Redis dies in the middle of a flood and comes back.
    doc/examples/discard-loops.sieve (:count 30) for a user with the
    default sieve_loopguard_on_error = keep, and for a user of a second
    Dovecot instance on the same Redis with tempfail.
    10 messages are counted; redis-server is killed (SIGKILL); 10 more to
    the keep user are all stored (the test is false, one warning per
    delivery, nothing lost or held), and the tempfail user's message is
    deferred (4xx), nothing stored.  Redis is started again (empty: the
    test instance keeps nothing on disk) on the same port: the tempfail
    user's retry is delivered, and of 40 more messages to the keep user
    the first 30 are stored and 10 discarded, so counting works again
    without a Dovecot restart."""
    u = ctx.user("keep", example("discard-loops.sieve"))
    other = Dovecot(os.path.join(ctx.dc.workdir, "backend-tempfail"),
                    ctx.dc.builddir, instance="loopguard-e2e-t",
                    metrics=False, extra_plugin=ctx.dc.extra_plugin
                    + "  sieve_loopguard_on_error = tempfail\n")
    other.start()
    try:
        t = other.user(ctx.address("tempfail"),
                       example("discard-loops.sieve"))
        msgs = flood_msgs(u, 60, sender="flood@remote.test")
        jobs = [(m.env_from, u.address, bytes(m)) for m in msgs]
        all_250(ctx.dc.deliver_many(jobs[:10]), "before the outage")
        check(not unavailable_lines(ctx, u), "warnings before the outage")

        ctx.redis.kill()
        all_250(ctx.dc.deliver_many(jobs[10:20]), "during the outage")
        same_ids(u.stored(), [m.msgid for m in msgs[:20]],
                 "during the outage")
        check(len(unavailable_lines(ctx, u)) == 10,
              "expected 10 'state unavailable' warnings, got %d"
              % len(unavailable_lines(ctx, u)))
        tmsg = flood_msgs(t, 1, sender="flood@remote.test",
                          tag="deferred")[0]
        code = t.deliver(tmsg)
        check(400 <= code < 500, "tempfail user during the outage: LMTP "
              "reply %d, expected 4xx" % code)
        check(t.stored() == [], "the deferred message was stored")

        ctx.redis.start()
        check(t.deliver(tmsg) == 250,
              "tempfail user's retry was not delivered")
        same_ids(t.stored(), [tmsg.msgid], "tempfail user after the outage")
        all_250(ctx.dc.deliver_many(jobs[20:60]), "after the outage")
        same_ids(u.stored(), [m.msgid for m in msgs[:50]],
                 "after the outage")
        check(len(ctx.fired("ratelimit", u)) == 10,
              "expected 10 'ratelimit fired' lines after the outage, got %d"
              % len(ctx.fired("ratelimit", u)))
        # the deferral is logged as errors: the state error, and
        # Pigeonhole's "aborted due to temporary failure"; nothing else
        deferral = re.compile(r"loopguard state error \(delivery "
                              r"deferred\)|aborted due to temporary failure")
        bad = [l for l in other.log_lines(0)
               if BAD_LOG_RE.search(l) and not deferral.search(l)]
        check(not bad, "the tempfail instance's log has errors: %s"
              % " || ".join(bad[:3]))
    finally:
        other.stop()
        if not ctx.redis.running():
            ctx.redis.start()
    check_user_keys(ctx, u.address)


@scenario("redis-purge", ("redis",))
def s_redis_purge(ctx):
    """R4. doveadm loopguard purge on Redis.  Keys expire by their TTL in
    Redis itself, so purge without --all has nothing to do and prints
    purged 0, list unchanged.  list -A and log -A show the user's rows as
    list -u and log -u do.  discard-loops.sieve, 35 flood messages (5
    discarded, 5 log events): purge --all prints as many purged as the
    user had keys in Redis (SCAN), leaves none, list and log are empty,
    and the flooder's next message is stored."""
    w, msgs = flooded_user(ctx, "wiped")
    rows, _ = lg(ctx, "list", w)
    check(len(rows) == 1 and rows[0]["key"] == "flood@remote.test",
          "list before purge: %r" % rows)
    # -A: every user of the userdb, this one's rows as -u gives them
    everyone, _ = lg(ctx, "list", None)
    mine = [{k: v for k, v in r.items() if k != "username"}
            for r in everyone if r.get("username") == w.address]
    check(mine == rows, "list -A rows of %s: %r, expected %r"
          % (w.address, mine, rows))
    everyone, _ = lg(ctx, "log", None)
    mine = [r for r in everyone if r.get("username") == w.address]
    check(len(mine) == 5, "log -A: %d events of %s, expected 5"
          % (len(mine), w.address))
    rows, _ = lg(ctx, "purge", w)
    check(rows == [{"purged": 0}], "purge: %r, expected purged 0" % rows)
    keys = check_user_keys(ctx, w.address)
    rows, _ = lg(ctx, "purge", w, "--all")
    check(rows == [{"purged": len(keys)}], "purge --all: %r, expected "
          "purged %d (the user's keys)" % (rows, len(keys)))
    left = [k for k in ctx.redis.keys("*") if w.address in k]
    check(not left, "keys left after purge --all: %r" % left[:3])
    check_wiped(ctx, w, msgs)


@scenario("redis-slow", ("redis",))
def s_redis_slow(ctx):
    """R3. A Redis that stops answering holds a delivery no longer than
    the timeout (timeout_msecs=500 here): while DEBUG SLEEP 5 blocks the
    server, a delivery to discard-loops.sieve is answered 250 well before
    the server wakes up, stored, with one 'state unavailable' warning.
    After it wakes, the next deliveries are counted again (no warning)."""
    u = ctx.user("user", example("discard-loops.sieve"))
    msgs = flood_msgs(u, 3, sender="slow@remote.test")
    check(u.deliver(msgs[0]) == 250, "first delivery")
    ctx.expected_errors.append(re.compile(r"loopguard state error"))
    sleeper = ctx.redis.send_only("DEBUG", "SLEEP", "5")
    try:
        start = time.monotonic()
        code = u.deliver(msgs[1])
        took = time.monotonic() - start
    finally:
        sleeper.settimeout(30)
        try:
            sleeper.recv(64)
        finally:
            sleeper.close()
    check(code == 250, "delivery while Redis sleeps: LMTP reply %d" % code)
    check(took < 4.0, "delivery while Redis sleeps took %.1f s: it "
          "waited for the server, not for the timeout" % took)
    check(len(unavailable_lines(ctx, u)) == 1,
          "expected 1 'state unavailable' warning, got %d"
          % len(unavailable_lines(ctx, u)))
    check(u.deliver(msgs[2]) == 250, "delivery after Redis woke up")
    check(len(unavailable_lines(ctx, u)) == 1,
          "the delivery after Redis woke up did not reach it")
    same_ids(u.stored(), [m.msgid for m in msgs], "slow Redis")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--builddir", default=os.environ.get(
        "LOOPGUARD_BUILDDIR", os.path.join(os.path.dirname(
            os.path.abspath(__file__)), "..", "..")))
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--store", choices=BOTH, default="lmdb",
                    help="run the scenarios that apply to this store "
                    "driver (redis: a private redis-server is started)")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()

    known = [n for n, _, _ in SCENARIOS]
    for n in args.names:
        if n not in known:
            print("unknown scenario %s (known: %s)" % (n, " ".join(known)))
            return 2
    todo = [(n, fn) for n, fn, stores in SCENARIOS
            if args.store in stores and (not args.names or n in args.names)]
    label = "" if args.store == "lmdb" else " [%s]" % args.store

    failed = []
    redis = None
    extra = ""
    try:
        if args.store == "redis":
            redis = RedisServer(os.path.join(args.workdir, "redis"))
            redis.start()
            extra = redis_setting(redis, prefix="e2e")
        dc = Dovecot(args.workdir, args.builddir, extra_plugin=extra)
        dc.start()
    except Exception as e:
        print("FAIL: setup%s: %s" % (label, e))
        if redis is not None:
            redis.stop()
        return 1
    try:
        for name, fn in todo:
            ctx = Ctx(dc, name, demo=args.demo, redis=redis)
            try:
                fn(ctx)
                bad = ctx.bad_log_lines()
                check(not bad, "Dovecot log has errors: %s"
                      % " || ".join(bad[:3]))
                print("PASS: %s%s" % (name, label))
                if args.demo:
                    narrate(name, ctx)
            except Failure as e:
                failed.append(name)
                print("FAIL: %s%s: %s" % (name, label, e))
            except Exception as e:
                failed.append(name)
                print("FAIL: %s%s: harness error: %s" % (name, label, e))
                traceback.print_exc()
            sys.stdout.flush()
    finally:
        dc.stop()
        if redis is not None:
            redis.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
