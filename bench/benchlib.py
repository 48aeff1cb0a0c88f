"""Shared pieces of the delivery benchmarks (bench-delivery-overhead,
bench-vs-duplicate, bench-slow-disk): the e2e harness's private Dovecot
(LMTP only, on 127.0.0.1; tests/e2e/e2elib.py) set up for measuring --
without the e2e metric blocks, with a private copy of the plugin, in a work
directory on local disk -- its users (whose userdb fields can override
plugin settings for one user), messages and LMTP client, and timing and
statistics helpers.

Benchmarks, not tests: they print figures measured side by side in one run.
Nothing is ever sent anywhere but to the private Dovecot on 127.0.0.1;
outgoing mail (vacation replies) lands in the capture directory.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import e2elib  # noqa: E402
from e2elib import Failure, Message, REPO, lmtp  # noqa: E402,F401


def need_root():
    if os.geteuid() != 0:
        print("SKIP: must run as root (Dovecot drops privileges itself)")
        sys.exit(77)
    if shutil.which("dovecot") is None:
        print("SKIP: dovecot not found")
        sys.exit(77)


def make_workdir(workdir, prefix):
    """Returns (path, made_here)."""
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        path, made = os.path.abspath(workdir), False
    else:
        # /var/tmp: local disk on ordinary systems (/tmp may be tmpfs)
        path, made = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"), True
    os.chmod(path, 0o755)
    return path, made


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


def fdatasync_ms(directory, n=100):
    """Median time of a 4 KiB write + fdatasync in directory, in ms: how
    much a synced commit costs on this disk."""
    path = os.path.join(directory, ".fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    ts = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            ts.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return 1000.0 * statistics.median(ts)


def dovecot(workdir, builddir):
    """The benchmarks' private Dovecot (not started yet): a private copy
    of the plugin, no metric blocks (see e2elib.Dovecot)."""
    return e2elib.Dovecot(workdir, builddir, instance="loopguard-bench",
                          metrics=False, copy_plugin=True)


def bad_log_lines(dc, since=0):
    return [l for l in dc.log_lines(since) if e2elib.BAD_LOG_RE.search(l)]


def fired_lines(dc, since=0):
    return [l for l in dc.log_lines(since) if e2elib.FIRED_RE.search(l)]


def interleaved_delivery(dc, jobs):
    """jobs: {variant: [(sender, rcpt, bytes)]}, lists of equal length;
    dc: the Dovecot, or {variant: Dovecot} when there are several.
    One LMTP connection per variant (set up before any clock starts);
    message i of every variant is delivered before message i+1 of any, in
    an order that rotates with i, so that the machine's ups and downs hit
    all variants alike.  Returns ({variant: seconds}, {variant: codes}),
    the seconds summed over that variant's own transactions."""
    variants = list(jobs)
    n = len(jobs[variants[0]])
    clients = {}
    secs = {v: 0.0 for v in variants}
    codes = {v: [] for v in variants}
    try:
        for v in variants:
            target = dc[v] if isinstance(dc, dict) else dc
            clients[v] = lmtp.LMTPClient(target.host, target.port)
        for i in range(n):
            for v in rotation(variants, i):
                s, r, d = jobs[v][i]
                t0 = time.perf_counter()
                res = clients[v].deliver(s, [r], d)
                secs[v] += time.perf_counter() - t0
                codes[v].append(res[0][1])
    finally:
        for c in clients.values():
            c.close()
    return secs, codes


def median(xs):
    return statistics.median(xs)


def spread(xs, fmt="%.1f"):
    """min..max, for the reader to judge the noise."""
    return (fmt + ".." + fmt) % (min(xs), max(xs))


def rotation(variants, k):
    """The variants rotated by k."""
    k %= len(variants)
    return variants[k:] + variants[:k]
