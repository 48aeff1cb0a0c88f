"""A small ManageSieve client (RFC 5804) for the end-to-end tests: what a
client such as Roundcube's managesieve plugin or Thunderbird's Sieve add-on
does -- AUTHENTICATE PLAIN, CAPABILITY, PUTSCRIPT, CHECKSCRIPT, SETACTIVE,
LISTSCRIPTS, GETSCRIPT, LOGOUT.  Plain TCP only (the tests talk to
127.0.0.1, where Dovecot allows plaintext authentication).
"""

import base64
import re
import socket


class ManageSieveError(Exception):
    pass


class Response:
    """A server's answer to one command: kind OK/NO/BYE, the optional
    response code in parentheses, the optional human-readable text, and the
    data lines (each a list of strings) that came before it."""

    def __init__(self, kind, code, text, data):
        self.kind, self.code, self.text, self.data = kind, code, text, data

    @property
    def ok(self):
        return self.kind == "OK"

    def __repr__(self):
        return "<%s %s %r>" % (self.kind, self.code or "", self.text)


_LITERAL_RE = re.compile(rb"\{(\d+)\+?\}$")


def quote(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def literal(data):
    """A non-synchronizing literal, which every RFC 5804 server accepts."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b"{%d+}\r\n" % len(data) + data


class ManageSieveClient:
    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        greeting = self._response()
        if not greeting.ok:
            raise ManageSieveError("greeting: %r" % greeting)
        self.capabilities = self._parse_capabilities(greeting.data)

    # -- wire ------------------------------------------------------------

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ManageSieveError("connection closed by the server")
        self.buf += chunk

    def _readline(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _tokens(self):
        """One response line, with its literals read in: a list of atoms
        and strings."""
        tokens, line = [], self._readline()
        while True:
            m = _LITERAL_RE.search(line)
            if m is None:
                tokens += self._split(line)
                return tokens
            tokens += self._split(line[:m.start()])
            tokens.append(self._read(int(m.group(1))).decode(
                "utf-8", "replace"))
            line = self._readline()

    @staticmethod
    def _split(line):
        out, i, s = [], 0, line.decode("utf-8", "replace")
        while i < len(s):
            c = s[i]
            if c == " ":
                i += 1
            elif c == '"':
                j, val = i + 1, []
                while s[j] != '"':
                    if s[j] == "\\":
                        j += 1
                    val.append(s[j])
                    j += 1
                out.append("".join(val))
                i = j + 1
            elif c == "(":
                j = s.index(")", i)
                out.append(s[i:j + 1])
                i = j + 1
            else:
                j = s.find(" ", i)
                j = len(s) if j < 0 else j
                out.append(s[i:j])
                i = j
        return out

    def _response(self):
        data = []
        while True:
            t = self._tokens()
            if t and t[0].upper() in ("OK", "NO", "BYE"):
                rest = t[1:]
                code = None
                if rest and rest[0].startswith("("):
                    code = rest.pop(0)[1:-1]
                return Response(t[0].upper(), code,
                                rest[0] if rest else "", data)
            data.append(t)

    def command(self, *parts):
        """Sends one command (str parts are sent as they are, bytes parts
        too; use quote() and literal()) and returns its Response."""
        out = b""
        for p in parts:
            if out and not out.endswith(b"\n"):
                out += b" "
            out += p.encode("utf-8") if isinstance(p, str) else p
        self.sock.sendall(out + b"\r\n")
        return self._response()

    @staticmethod
    def _parse_capabilities(lines):
        caps = {}
        for t in lines:
            if t:
                caps[t[0].upper()] = t[1] if len(t) > 1 else ""
        return caps

    # -- commands ----------------------------------------------------------

    def authenticate_plain(self, user, password):
        token = base64.b64encode(
            b"\0" + user.encode() + b"\0" + password.encode()).decode()
        r = self.command("AUTHENTICATE", quote("PLAIN"), quote(token))
        if r.ok:
            # RFC 5804 2.1: capabilities may change after authentication.
            self.capabilities = self.capability()
        return r

    def capability(self):
        r = self.command("CAPABILITY")
        if not r.ok:
            raise ManageSieveError("CAPABILITY: %r" % r)
        return self._parse_capabilities(r.data)

    def sieve_extensions(self):
        return self.capabilities.get("SIEVE", "").split()

    def putscript(self, name, script):
        return self.command("PUTSCRIPT", quote(name), literal(script))

    def checkscript(self, script):
        return self.command("CHECKSCRIPT", literal(script))

    def setactive(self, name):
        return self.command("SETACTIVE", quote(name))

    def listscripts(self):
        """[(name, active)]"""
        r = self.command("LISTSCRIPTS")
        if not r.ok:
            raise ManageSieveError("LISTSCRIPTS: %r" % r)
        return [(t[0], len(t) > 1 and t[1].upper() == "ACTIVE")
                for t in r.data if t]

    def getscript(self, name):
        r = self.command("GETSCRIPT", quote(name))
        if not r.ok:
            raise ManageSieveError("GETSCRIPT %s: %r" % (name, r))
        return r.data[0][0] if r.data and r.data[0] else ""

    def logout(self):
        try:
            self.command("LOGOUT")
        finally:
            self.sock.close()
