"""Plumbing for the end-to-end tests: a private Dovecot (LMTP only) on
127.0.0.1, per-scenario users with a Sieve script, a sendmail stand-in that
captures what Sieve sends (vacation replies, redirects), and helpers to
build messages and read Maildirs and the Dovecot log.

Nothing here ever sends mail anywhere but to the private Dovecot on
127.0.0.1: outgoing mail (sendmail_path) lands in the capture directory.
"""

import email
import email.policy
import email.utils
import importlib.util
import itertools
import json
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLES = os.path.join(REPO, "doc", "examples")
TEST_SCRIPTS = os.path.join(HERE, "scripts")

_spec = importlib.util.spec_from_file_location(
    "lmtp_send", os.path.join(HERE, "lmtp-send.py"))
lmtp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lmtp)

DOMAIN = "example.org"
PLUGIN_SO = "lib90_sieve_loopguard_plugin.so"
DOVEADM_PLUGIN_SO = "lib10_doveadm_loopguard_plugin.so"
# doveadm loads plugins only from its compiled-in module directory.  The
# tests never install there: each doveadm call runs in its own mount
# namespace (unshare -m) with a private copy of that directory, holding the
# system's doveadm plugins plus the one from the build tree, bind-mounted
# over it.
SYSTEM_DOVEADM_MODULES = "/usr/lib/dovecot/modules/doveadm"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# The ready-made metric blocks of the documentation; the e2e Dovecot uses
# them as they are written there (uncommented).
EXAMPLE_CONFIG = os.path.join(REPO, "doc", "example-config",
                              "90-sieve-loopguard.conf")

# The error lines that must never show up in the Dovecot log.
BAD_LOG_RE = re.compile(r"(Error:|Panic|Fatal)")
FIRED_RE = re.compile(
    r"loopguard: (?P<test>\w+) fired: user=(?P<user>[^,]*), "
    r"handle=(?P<handle>[^,]*), key=(?P<key>.*?), reasons=(?P<reasons>.*?), "
    r"message-id=(?P<msgid>.*?), count=(?P<count>\d+), "
    r"window=(?P<window>\d+)s, locked-until=(?P<locked>.*)$")

_seq = itertools.count(1)


class Failure(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failure(why)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def example_metrics(path=EXAMPLE_CONFIG):
    """The commented-out `metric` blocks of the example config, uncommented:
    {name: block text}."""
    blocks, cur = {}, None
    with open(path) as f:
        for line in f:
            m = re.match(r"^#(metric\s+(\S+)\s*\{.*)$", line.rstrip("\n"))
            if m:
                cur = m.group(2)
                blocks[cur] = [m.group(1)]
            elif cur is not None and line.startswith("#"):
                blocks[cur].append(line[1:].rstrip("\n"))
                if line[1:].strip() == "}":
                    cur = None
            else:
                cur = None
    return {n: "\n".join(b) + "\n" for n, b in blocks.items()}


def find_plugin_dir(builddir):
    for d in (os.path.join(builddir, "src", ".libs"), builddir,
              os.path.join(builddir, ".libs")):
        if os.path.isfile(os.path.join(d, PLUGIN_SO)):
            return d
    return None


SENDMAIL_CAPTURE = r"""#!/bin/sh
# sendmail stand-in for the e2e tests: never sends anything, keeps the
# message and its argv (the envelope) in the capture directory.
dir='@CAPDIR@'
n="$(date +%s%N).$$"
printf '%s\n' "$@" > "$dir/.$n.args"
cat > "$dir/.$n.eml" || exit 75
mv "$dir/.$n.args" "$dir/$n.args"
mv "$dir/.$n.eml" "$dir/$n.eml"
exit 0
"""


class Dovecot:
    """A private Dovecot under `workdir`.  Runs as root (it must, to switch to
    the mail user) with unprivileged internal/login users and all mail owned
    by `mail_user` (default nobody)."""

    def __init__(self, workdir, builddir, mail_user="nobody", extra_plugin=""):
        self.workdir = os.path.abspath(workdir)
        self.builddir = os.path.abspath(builddir)
        self.plugin_dir = find_plugin_dir(self.builddir)
        if self.plugin_dir is None:
            raise Failure("%s not found under %s (build first: make -C %s)"
                          % (PLUGIN_SO, self.builddir, self.builddir))
        pw = pwd.getpwnam(mail_user)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.base_dir = os.path.join(self.workdir, "run")
        self.home_root = os.path.join(self.workdir, "home")
        self.capture_dir = os.path.join(self.workdir, "capture")
        self.archive_dir = os.path.join(self.workdir, "capture-archive")
        self.log_path = os.path.join(self.workdir, "dovecot.log")
        self.conf_path = os.path.join(self.workdir, "dovecot.conf")
        self.sendmail = os.path.join(self.workdir, "bin", "sendmail-capture")
        self.port = _free_port()
        self.extra_plugin = extra_plugin
        self.host = "127.0.0.1"
        self.metrics = example_metrics()
        self.doveadm_plugin = os.path.join(self.builddir, "src", "doveadm",
                                           ".libs", DOVEADM_PLUGIN_SO)
        self.doveadm_modules = os.path.join(self.workdir, "doveadm-modules")
        self._setup()

    # -- setup ---------------------------------------------------------

    def _setup(self):
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        for d in (self.home_root, self.archive_dir,
                  os.path.dirname(self.sendmail)):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.capture_dir, exist_ok=True)
        os.chown(self.capture_dir, self.uid, self.gid)
        os.chmod(self.capture_dir, 0o755)
        with open(self.sendmail, "w") as f:
            f.write(SENDMAIL_CAPTURE.replace("@CAPDIR@", self.capture_dir))
        os.chmod(self.sendmail, 0o755)
        with open(self.conf_path, "w") as f:
            f.write(self.config())
        open(self.log_path, "a").close()

    def config(self):
        return """# generated by tests/e2e/e2elib.py
instance_name = loopguard-e2e-{port}
base_dir = {base_dir}
state_dir = {workdir}/state
log_path = {log}
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
hostname = mx.{domain}
postmaster_address = postmaster@{domain}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
last_valid_uid = {uid}
sendmail_path = {sendmail}

passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={homes}/%u
}}

service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}

protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}

plugin {{
  sieve = file:~/.dovecot.sieve
  sieve_plugin_dir = {plugin_dir}
  sieve_plugins = sieve_loopguard
{extra}}}

# doveadm re-executes itself through doveconf, which clears the environment
# down to import_environment: keep libfaketime's variables, so that the
# tests can move doveadm's clock (nothing else here ever sets them).
import_environment = $import_environment LD_PRELOAD FAKETIME

# The metric blocks of {example_config}, verbatim:
{metrics}""".format(
           port=self.port, base_dir=self.base_dir, workdir=self.workdir,
           log=self.log_path, domain=DOMAIN, uid=self.uid, gid=self.gid,
           sendmail=self.sendmail, homes=self.home_root,
           plugin_dir=self.plugin_dir, extra=self.extra_plugin,
           example_config=os.path.relpath(EXAMPLE_CONFIG, REPO),
           metrics="".join(self.metrics[n] for n in sorted(self.metrics)))

    # -- lifecycle -----------------------------------------------------

    def master_pid(self):
        try:
            with open(os.path.join(self.base_dir, "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout=15):
        os.makedirs(os.path.join(self.workdir, "state"), exist_ok=True)
        out = open(os.path.join(self.workdir, "dovecot.stdout"), "a")
        r = subprocess.run(["dovecot", "-c", self.conf_path],
                           stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        if r.returncode != 0:
            raise Failure("dovecot failed to start (exit %d), see %s and %s"
                          % (r.returncode, self.log_path,
                             os.path.join(self.workdir, "dovecot.stdout")))
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                c = lmtp.LMTPClient(self.host, self.port, timeout=5)
                c.close()
                return
            except (OSError, lmtp.LMTPError):
                time.sleep(0.1)
        raise Failure("dovecot did not answer on 127.0.0.1:%d" % self.port)

    def stop(self, timeout=15):
        pid = self.master_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        # The master is gone; wait until the port is free again.
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = socket.socket()
            try:
                s.connect((self.host, self.port))
            except OSError:
                return
            finally:
                s.close()
            time.sleep(0.05)

    def restart(self):
        self.stop()
        self.start()

    # -- log -----------------------------------------------------------

    def log_offset(self):
        return os.path.getsize(self.log_path)

    def log_lines(self, since=0):
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace").splitlines()

    # -- doveadm --------------------------------------------------------

    def _doveadm_modules(self):
        """Fills the private doveadm module directory (once): copies, not
        symlinks, of the system's doveadm plugins plus the build tree's."""
        if os.path.isdir(self.doveadm_modules):
            return
        check(os.path.isfile(self.doveadm_plugin),
              "%s not found (build first: make -C %s)"
              % (self.doveadm_plugin, self.builddir))
        check(os.path.isdir(SYSTEM_DOVEADM_MODULES),
              "%s: no such directory" % SYSTEM_DOVEADM_MODULES)
        check(shutil.which("unshare") is not None, "unshare not found")
        tmp = self.doveadm_modules + ".tmp"
        os.makedirs(tmp)
        for n in sorted(os.listdir(SYSTEM_DOVEADM_MODULES)):
            if n.endswith(".so") and n != DOVEADM_PLUGIN_SO:
                shutil.copyfile(os.path.join(SYSTEM_DOVEADM_MODULES, n),
                                os.path.join(tmp, n))
        shutil.copyfile(self.doveadm_plugin,
                        os.path.join(tmp, DOVEADM_PLUGIN_SO))
        os.chmod(tmp, 0o755)
        os.rename(tmp, self.doveadm_modules)

    def doveadm(self, args, faketime=None, plugin=True, timeout=60):
        """Runs `doveadm -c <our config> ARGS` -> (exit code, stdout,
        stderr).  plugin=True: in a private mount namespace where the
        doveadm module directory holds our plugin.  faketime ("+2d"): with
        doveadm's clock shifted by libfaketime (doveadm only; Dovecot's own
        processes keep the real time)."""
        cmd = ["doveadm", "-c", self.conf_path] + list(args)
        if plugin:
            self._doveadm_modules()
            cmd = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" %s && exec "$@"'
                   % SYSTEM_DOVEADM_MODULES, self.doveadm_modules] + cmd
        env = dict(os.environ)
        for k in ("LD_PRELOAD", "FAKETIME"):
            env.pop(k, None)
        if faketime is not None:
            check(os.path.isfile(FAKETIME_LIB),
                  "%s not found (install libfaketime)" % FAKETIME_LIB)
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=faketime)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=timeout)
        return (r.returncode, r.stdout.decode("utf-8", "replace"),
                r.stderr.decode("utf-8", "replace"))

    def loopguard(self, command, user, *args, faketime=None, fmt="json"):
        """doveadm -f FMT loopguard COMMAND -u USER ARGS -> (exit code,
        parsed JSON (or the text with fmt other than json; None when the
        output is no JSON), stderr)."""
        address = user if isinstance(user, str) else user.address
        rc, out, err = self.doveadm(["-f", fmt, "loopguard", command,
                                     "-u", address] + list(args),
                                    faketime=faketime)
        if fmt != "json":
            return rc, out, err
        try:
            data = json.loads(out) if out.strip() else None
        except ValueError:
            data = None
        return rc, data, err

    def stats(self):
        """`doveadm stats dump` -> {metric name: count}.  The count column
        is found by its header, not by position."""
        rc, out, err = self.doveadm(["stats", "dump"], plugin=False)
        check(rc == 0, "doveadm stats dump exited %d: %s" % (rc, err.strip()))
        lines = out.splitlines()
        check(lines and "count" in lines[0].split("\t"),
              "doveadm stats dump: no header with a count column: %r"
              % lines[:1])
        col = lines[0].split("\t").index("count")
        out = {}
        for line in lines[1:]:
            f = line.split("\t")
            out[f[0]] = int(f[col])
        return out

    # -- captures ------------------------------------------------------

    def archive_captures(self, label):
        dest = os.path.join(self.archive_dir, label)
        os.makedirs(dest, exist_ok=True)
        for n in os.listdir(self.capture_dir):
            if not n.startswith("."):
                shutil.move(os.path.join(self.capture_dir, n),
                            os.path.join(dest, n))

    def captures(self, seen=None):
        """Captured outgoing messages, oldest first, skipping names in
        `seen` (a set, updated)."""
        out = []
        names = sorted(n[:-4] for n in os.listdir(self.capture_dir)
                       if n.endswith(".eml") and not n.startswith("."))
        names.sort(key=lambda n: tuple(int(x) for x in n.split(".")))
        for n in names:
            if seen is not None:
                if n in seen:
                    continue
                seen.add(n)
            out.append(Captured(os.path.join(self.capture_dir, n)))
        return out

    # -- users and delivery --------------------------------------------

    def user(self, name, script_path, substitute=None):
        return User(self, name, script_path, substitute)

    def deliver(self, sender, rcpt, data):
        """One message, one recipient; returns the LMTP reply code."""
        res = lmtp.deliver_one(self.host, self.port, sender, [rcpt], data)
        return res[0][1]

    def deliver_many(self, jobs, parallel=1):
        """jobs: [(sender, rcpt, data)] -> list of reply codes."""
        jobs = [(s, [r], d, "") for s, r, d in jobs]
        if parallel > 1:
            res = lmtp.deliver_parallel(self.host, self.port, jobs, parallel)
        else:
            c = lmtp.LMTPClient(self.host, self.port)
            try:
                res = [c.deliver(s, r, d) for s, r, d, _ in jobs]
            finally:
                c.close()
        return [r[0][1] for r in res]


class Captured:
    """One message handed to sendmail by Dovecot."""

    def __init__(self, base):
        self.base = base
        with open(base + ".args") as f:
            self.argv = f.read().splitlines()
        with open(base + ".eml", "rb") as f:
            self.raw = f.read()
        self.msg = email.message_from_bytes(self.raw,
                                            policy=email.policy.compat32)
        # Envelope: sendmail [-i] [-f sender] [--] rcpt...
        self.env_from = None
        rcpts, i, argv = [], 0, self.argv
        while i < len(argv):
            a = argv[i]
            if a == "-f" and i + 1 < len(argv):
                self.env_from = argv[i + 1]
                i += 2
                continue
            if a.startswith("-f") and len(a) > 2:
                self.env_from = a[2:]
            elif a == "--":
                rcpts += argv[i + 1:]
                break
            elif not a.startswith("-"):
                rcpts.append(a)
            i += 1
        self.env_to = [r.strip("<>") for r in rcpts]
        if self.env_from is not None:
            self.env_from = self.env_from.strip("<>")

    def header(self, name):
        return self.msg.get(name)

    def from_addr(self):
        return email.utils.parseaddr(self.msg.get("From", ""))[1]

    def body_text(self):
        payload = self.msg.get_payload(decode=True)
        if payload is None:
            return str(self.msg.get_payload())
        return payload.decode("utf-8", "replace")

    def __repr__(self):
        return "<Captured from=%r to=%r subject=%r>" % (
            self.env_from, self.env_to, self.msg.get("Subject"))


class User:
    def __init__(self, dc, name, script_path, substitute=None):
        self.dc = dc
        self.address = name if "@" in name else "%s@%s" % (name, DOMAIN)
        self.home = os.path.join(dc.home_root, self.address)
        if os.path.exists(self.home):
            shutil.rmtree(self.home)
        os.makedirs(self.home)
        with open(script_path) as f:
            script = f.read()
        for old, new in (substitute or {}).items():
            check(old in script, "script %s has no %r to substitute"
                  % (script_path, old))
            script = script.replace(old, new)
        self.script = script
        with open(os.path.join(self.home, ".dovecot.sieve"), "w") as f:
            f.write(script)
        for root, dirs, files in os.walk(self.home):
            for n in dirs + files:
                os.chown(os.path.join(root, n), dc.uid, dc.gid)
        os.chown(self.home, dc.uid, dc.gid)
        os.chmod(self.home, 0o700)

    def maildir_files(self, folder=None):
        md = os.path.join(self.home, "Maildir")
        if folder:
            md = os.path.join(md, "." + folder)
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(md, sub)
            if os.path.isdir(d):
                out += [os.path.join(d, n) for n in sorted(os.listdir(d))]
        return out

    def stored(self, folder=None):
        """Message-IDs of the messages in a folder (INBOX by default)."""
        ids = []
        for p in self.maildir_files(folder):
            with open(p, "rb") as f:
                m = email.message_from_binary_file(
                    f, policy=email.policy.compat32)
            ids.append((m.get("Message-ID") or "").strip())
        return ids

    def deliver(self, msg, sender=None):
        """Delivers a Message (or raw text) to this user; returns the code."""
        if sender is None:
            sender = msg.env_from
        return self.dc.deliver(sender, self.address, bytes(msg))


class Message:
    """A test message.  Every one gets a unique Message-ID and Date; the body
    says who sent it and its sequence number, so no two are alike."""

    def __init__(self, frm, to, subject, body=None, env_from=None,
                 headers=None, msgid=None, date=None, raw_body=None,
                 content_type=None):
        n = next(_seq)
        self.frm, self.to, self.subject = frm, to, subject
        self.env_from = (email.utils.parseaddr(frm)[1]
                         if env_from is None else env_from)
        self.msgid = msgid or "<e2e.%d.%d.%s@%s>" % (
            os.getpid(), n, int(time.time() * 1000), "e2e.test")
        self.date = date or email.utils.formatdate(localtime=True)
        self.headers = list(headers or [])
        self.content_type = content_type or "text/plain; charset=us-ascii"
        self.body = raw_body if raw_body is not None else (
            body or "Message %d from %s.\n" % (n, self.env_from or "<>"))

    def __bytes__(self):
        h = [("From", self.frm), ("To", self.to), ("Subject", self.subject),
             ("Date", self.date), ("Message-ID", self.msgid),
             ("MIME-Version", "1.0"), ("Content-Type", self.content_type)]
        h += self.headers
        text = "".join("%s: %s\r\n" % kv for kv in h) + "\r\n" + self.body
        return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def example(name):
    return os.path.join(EXAMPLES, name)


def test_script(name):
    return os.path.join(TEST_SCRIPTS, name)
