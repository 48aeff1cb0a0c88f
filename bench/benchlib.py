"""Shared pieces of the delivery benchmarks (bench-delivery-overhead,
bench-vs-duplicate): a private Dovecot from tests/e2e/e2elib.py (used
read-only), with a passwd-file userdb so that single users can override
plugin settings, plus timing and statistics helpers.

Benchmarks, not tests: they print figures measured side by side in one run.
Everything stays on 127.0.0.1; outgoing mail lands in the capture directory.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import e2elib  # noqa: E402  (read-only use)
from e2elib import DOMAIN, BAD_LOG_RE, FIRED_RE  # noqa: E402,F401


def need_root():
    if os.geteuid() != 0:
        print("SKIP: must run as root (Dovecot drops privileges itself)")
        sys.exit(77)
    for prog in ("dovecot",):
        if subprocess.run(["sh", "-c", "command -v " + prog],
                          stdout=subprocess.DEVNULL).returncode != 0:
            print("SKIP: %s not found" % prog)
            sys.exit(77)


def make_workdir(workdir, prefix):
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        return os.path.abspath(workdir), False
    # /var/tmp: on local disk on ordinary systems (/tmp may be tmpfs)
    return tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"), True


def fs_type(path):
    r = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", path],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       universal_newlines=True)
    if r.returncode != 0 or not r.stdout.strip():
        r = subprocess.run(["stat", "-f", "-c", "%T", path],
                           stdout=subprocess.PIPE, universal_newlines=True)
    return r.stdout.strip() or "?"


def fs_device(path):
    r = subprocess.run(["df", "-P", path], stdout=subprocess.PIPE,
                       universal_newlines=True)
    lines = r.stdout.strip().splitlines()
    return lines[-1].split()[0] if len(lines) > 1 else "?"


class BenchDovecot(e2elib.Dovecot):
    """e2elib's private Dovecot, but the userdb is a passwd-file so that a
    user can carry plugin overrides (e.g. sieve_loopguard_sync=no).  Users
    are registered with add_user() before start()."""

    def __init__(self, workdir, builddir, extra_plugin=""):
        self.passwd_path = os.path.join(os.path.abspath(workdir),
                                        "userdb.passwd")
        self._userdb_lines = []
        super().__init__(workdir, builddir, extra_plugin=extra_plugin)
        # the config was written with no users yet; (re)write both
        self._write_userdb()

    def config(self):
        conf = super().config()
        static = """userdb {{
  driver = static
  args = uid={uid} gid={gid} home={homes}/%u
}}""".format(uid=self.uid, gid=self.gid, homes=self.home_root)
        if static not in conf:
            raise e2elib.Failure("e2elib's userdb block changed; "
                                 "update bench/benchlib.py")
        return conf.replace(static, """userdb {{
  driver = passwd-file
  args = {passwd}
}}""".format(passwd=self.passwd_path))

    def _write_userdb(self):
        with open(self.passwd_path, "w") as f:
            f.write("".join(l + "\n" for l in self._userdb_lines))
        os.chmod(self.passwd_path, 0o644)

    def add_user(self, name, script_text, overrides=None):
        """Registers a user (fresh home, ~/.dovecot.sieve = script_text)
        and returns an e2elib.User.  overrides: {setting: value} applied
        to this user only through userdb extra fields."""
        address = name if "@" in name else "%s@%s" % (name, DOMAIN)
        home = os.path.join(self.home_root, address)
        extra = " ".join("userdb_%s=%s" % kv
                         for kv in sorted((overrides or {}).items()))
        self._userdb_lines.append("%s::%d:%d::%s::%s" % (
            address, self.uid, self.gid, home, extra))
        self._write_userdb()
        script = os.path.join(self.workdir, "script-%s.sieve" % name)
        with open(script, "w") as f:
            f.write(script_text)
        return e2elib.User(self, address, script)

    def userdb_fields(self, address):
        r = subprocess.run(["doveadm", "-c", self.conf_path, "user", address],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        return r.stdout

    def chown_tree(self, path):
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), self.uid, self.gid)
        os.lchown(path, self.uid, self.gid)

    def clear_captures(self):
        """Counts and removes captured outgoing messages."""
        n = 0
        for name in os.listdir(self.capture_dir):
            if name.startswith("."):
                continue
            if name.endswith(".eml"):
                n += 1
            os.unlink(os.path.join(self.capture_dir, name))
        return n

    def bad_log_lines(self, since):
        return [l for l in self.log_lines(since) if BAD_LOG_RE.search(l)]

    def fired_lines(self, since):
        return [l for l in self.log_lines(since) if FIRED_RE.search(l)]


def timed_delivery(dc, jobs):
    """Delivers jobs [(sender, rcpt, bytes)] one after the other over one
    LMTP connection.  Returns (seconds, [reply codes]).  The connection is
    set up before the clock starts."""
    c = e2elib.lmtp.LMTPClient(dc.host, dc.port)
    try:
        t0 = time.perf_counter()
        res = [c.deliver(s, [r], d) for s, r, d in jobs]
        t1 = time.perf_counter()
    finally:
        c.close()
    return t1 - t0, [r[0][1] for r in res]


def median(xs):
    return statistics.median(xs)


def spread(xs):
    """min..max as a string, for the reader to judge the noise."""
    return "%.1f..%.1f" % (min(xs), max(xs))


def rotation(variants, r):
    """Round r's order: the variants rotated by r, so no variant always
    runs first or right after another one."""
    k = r % len(variants)
    return variants[k:] + variants[:k]
