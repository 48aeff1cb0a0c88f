#!/usr/bin/env python3
"""Deliver messages to an LMTP server and report each recipient's reply.

    lmtp-send.py [--host 127.0.0.1] --port P --from ADDR --to ADDR [--to ...]
                 [--parallel N] [FILE|DIR ...]

FILE may be "-" (stdin, the default when no file is given); a DIR sends every
regular file in it, in name order.  --from "" sends the null sender MAIL FROM:<>.
With --parallel N the messages are spread over N concurrent LMTP sessions
(message i goes to session i mod N); each session sends its share one after
the other, with RSET between transactions.

Output: one line per message and recipient:

    <code> <recipient> <message-file> <reply text>

Exit status: 0 when every reply was 2xx, 1 when some were not, 2 on a
connection/protocol failure.  Used both as a command and, through
importlib, as a module by e2elib.py.

Only talks to the host given (the e2e harness only ever uses 127.0.0.1).
"""

import argparse
import os
import socket
import sys
import threading


class LMTPError(Exception):
    pass


class LMTPClient:
    """A minimal LMTP client (RFC 2033).  Unlike smtplib.LMTP it reads one
    reply per accepted recipient after DATA."""

    def __init__(self, host, port, timeout=60, lhlo_name="e2e.test"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        code, text = self._reply()
        if code != 220:
            raise LMTPError("greeting: %d %s" % (code, text))
        self._cmd("LHLO " + lhlo_name, 250)

    def _reply(self):
        lines = []
        while True:
            line = self.rfile.readline()
            if not line:
                raise LMTPError("connection closed by server")
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                try:
                    return int(line[:3]), "\n".join(lines)
                except ValueError:
                    raise LMTPError("bad reply: %r" % line)

    def _send(self, data):
        self.sock.sendall(data)

    def _cmd(self, cmd, expect=None):
        self._send(cmd.encode("utf-8") + b"\r\n")
        code, text = self._reply()
        if expect is not None and code != expect:
            raise LMTPError("%s: %d %s" % (cmd, code, text))
        return code, text

    def deliver(self, sender, recipients, data):
        """Sends one transaction.  Returns [(recipient, code, text)]: for a
        recipient refused at RCPT, its RCPT reply; otherwise its reply after
        DATA."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        results = {}
        code, text = self._cmd("MAIL FROM:<%s>" % sender)
        if code != 250:
            return [(r, code, text) for r in recipients]
        accepted = []
        for rcpt in recipients:
            code, text = self._cmd("RCPT TO:<%s>" % rcpt)
            if code == 250:
                accepted.append(rcpt)
            else:
                results[rcpt] = (code, text)
        if accepted:
            code, text = self._cmd("DATA")
            if code != 354:
                for rcpt in accepted:
                    results[rcpt] = (code, text)
            else:
                self._send(_dot_stuff(data) + b".\r\n")
                for rcpt in accepted:
                    results[rcpt] = self._reply()
        self._cmd("RSET")
        return [(r,) + results[r] for r in recipients]

    def close(self):
        try:
            self._cmd("QUIT")
        except (LMTPError, OSError):
            pass
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


def _dot_stuff(data):
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    lines = data.split(b"\r\n")
    out = [b"." + l if l.startswith(b".") else l for l in lines]
    return b"\r\n".join(out)


def deliver_one(host, port, sender, recipients, data):
    c = LMTPClient(host, port)
    try:
        return c.deliver(sender, recipients, data)
    finally:
        c.close()


def deliver_parallel(host, port, jobs, parallel):
    """jobs: list of (sender, [recipients], data, label).  Sends them over
    `parallel` concurrent sessions, all started together.  Returns a list
    (in job order) of [(recipient, code, text)]; a session that fails
    reports code 0 for its remaining jobs."""
    results = [None] * len(jobs)
    start = threading.Barrier(parallel)

    def worker(w):
        mine = list(range(w, len(jobs), parallel))
        try:
            c = LMTPClient(host, port)
        except (LMTPError, OSError) as e:
            for i in mine:
                results[i] = [(r, 0, str(e)) for r in jobs[i][1]]
            start.abort()
            return
        try:
            try:
                start.wait(timeout=30)
            except threading.BrokenBarrierError:
                pass
            for i in mine:
                sender, rcpts, data, _label = jobs[i]
                try:
                    results[i] = c.deliver(sender, rcpts, data)
                except (LMTPError, OSError) as e:
                    results[i] = [(r, 0, str(e)) for r in rcpts]
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(w,))
               for w in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--from", dest="sender", required=True,
                    help='envelope sender; "" for the null sender <>')
    ap.add_argument("--to", dest="rcpts", action="append", required=True)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()

    files = []
    for f in args.files or ["-"]:
        if f != "-" and os.path.isdir(f):
            files += sorted(os.path.join(f, n) for n in os.listdir(f)
                            if os.path.isfile(os.path.join(f, n)))
        else:
            files.append(f)
    jobs = []
    for f in files:
        if f == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(f, "rb") as fh:
                data = fh.read()
        jobs.append((args.sender, args.rcpts, data, f))

    try:
        if args.parallel > 1:
            results = deliver_parallel(args.host, args.port, jobs,
                                       args.parallel)
        else:
            c = LMTPClient(args.host, args.port)
            results = [c.deliver(s, r, d) for s, r, d, _ in jobs]
            c.close()
    except (LMTPError, OSError) as e:
        print("lmtp-send: %s" % e, file=sys.stderr)
        return 2
    ok = True
    for job, res in zip(jobs, results):
        for rcpt, code, text in res:
            print("%d %s %s %s" % (code, rcpt, job[3],
                                   text.replace("\n", " | ")))
            ok = ok and 200 <= code < 300
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
