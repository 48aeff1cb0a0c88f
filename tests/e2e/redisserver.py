"""A private redis-server for the end-to-end tests and benchmarks: started
from Debian's binary on 127.0.0.1 with a free port, in a directory of its
own, without persistence, and stopped at the end.  Never a system service.

RedisServer.command() speaks just enough RESP to look at the server from a
test (DBSIZE, SCAN, TTL, INFO, DEBUG SLEEP) without redis-cli."""

import os
import shutil
import socket
import subprocess
import time


class RedisError(Exception):
    pass


def redis_server_binary():
    """$LOOPGUARD_REDIS_SERVER, redis-server, or Debian's redis-tools
    binary redis-check-rdb, which serves when called as redis-server (the
    package redis-server adds only that name and a system service)."""
    return (os.environ.get("LOOPGUARD_REDIS_SERVER")
            or shutil.which("redis-server")
            or shutil.which("redis-check-rdb"))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)


class RedisServer:
    """redis-server on 127.0.0.1:self.port under `workdir`.  password:
    requirepass.  The server's own log is workdir/redis.log."""

    def __init__(self, workdir, password=None, port=None):
        self.workdir = os.path.abspath(workdir)
        self.password = password
        self.port = port or _free_port()
        self.host = "127.0.0.1"
        self.proc = None
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o755)

    def uri(self, prefix="lg", timeout_msecs=500, extra=""):
        """The sieve_loopguard_db value for this server."""
        return ("redis:host=%s:port=%d:prefix=%s:timeout_msecs=%d%s"
                % (self.host, self.port, prefix, timeout_msecs, extra))

    def start(self, timeout=10):
        binary = redis_server_binary()
        if binary is None:
            raise RedisError("redis-server not found (scripts/install-deps.sh "
                             "installs redis-tools)")
        # argv[0] redis-server makes redis-check-rdb a server
        args = ["redis-server", "--bind", self.host, "--port", str(self.port),
                "--save", "", "--appendonly", "no",
                "--dir", self.workdir,
                "--logfile", os.path.join(self.workdir, "redis.log"),
                "--daemonize", "no", "--enable-debug-command", "local"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, executable=binary,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except (OSError, RedisError):
                pass
            if self.proc.poll() is not None:
                raise RedisError("redis-server exited with %d (see %s)"
                                 % (self.proc.returncode,
                                    os.path.join(self.workdir, "redis.log")))
            if time.monotonic() > deadline:
                raise RedisError("redis-server did not answer within %ds"
                                 % timeout)
            time.sleep(0.05)

    def kill(self):
        """Ends the server at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, *args, timeout=10):
        """Runs one command on a connection of its own; returns the
        decoded reply (RedisError for an error reply)."""
        with socket.create_connection((self.host, self.port),
                                      timeout=timeout) as s:
            r = _Reader(s)
            if self.password is not None:
                s.sendall(_encode(["AUTH", self.password]))
                r.reply()
            s.sendall(_encode(list(args)))
            return r.reply()

    def send_only(self, *args):
        """Sends one command and returns the open socket without reading
        the reply (for a DEBUG SLEEP that holds the server meanwhile)."""
        s = socket.create_connection((self.host, self.port), timeout=30)
        if self.password is not None:
            s.sendall(_encode(["AUTH", self.password]))
            _Reader(s).reply()
        s.sendall(_encode(list(args)))
        return s

    def keys(self, match="*"):
        """Every key matching `match`, by SCAN."""
        cursor, out = b"0", []
        while True:
            cursor, batch = self.command("SCAN", cursor, "MATCH", match,
                                         "COUNT", 1000)
            out += [k.decode(errors="replace") for k in batch]
            if cursor in (b"0", 0):
                return out

    def ttl(self, key):
        return self.command("TTL", key)

    def calls(self):
        """Commands the server has run so far (INFO commandstats), by
        command name."""
        info = self.command("INFO", "commandstats").decode()
        out = {}
        for line in info.splitlines():
            if line.startswith("cmdstat_"):
                name, fields = line[len("cmdstat_"):].split(":", 1)
                kv = dict(f.split("=", 1) for f in fields.split(","))
                out[name] = int(kv["calls"])
        return out
