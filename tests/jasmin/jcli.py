#!/usr/bin/env python3
"""A minimal jCli (Jasmin's telnet console) client, standard library only.

    python jcli.py --port 8990 [--user jcliadmin --password jclipwd] SCRIPT [KEY=VALUE ...]

types every line of SCRIPT that is not empty and does not start with '#' into jCli, after
replacing ${KEY} by VALUE, waits for the prompt after each line, prints the transcript, and
exits 1 when jCli answers a line with an error (the same rules as tests/it/support/jasmin.rs).
Used by tests/jasmin/capture.py; the Rust harness has its own copy of this logic.
"""
import re
import socket
import sys
import time

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
PROMPTS = (b"jcli : ", b"> ", b"Username: ", b"Password: ")
# jCli's answers that mean the line was refused (jasmin/protocols/cli/*.py).
ERRORS = re.compile(r"(Unknown|Error|error|Invalid|invalid|Incorrect|not found|[Cc]annot"
                    r"|[Cc]ould not|must be|required|Missing|missing|Failed|failed)")
ANSI = re.compile(rb"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")


class JCli:
    def __init__(self, port, host="127.0.0.1", timeout=20):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def _recv(self):
        data = self.sock.recv(4096)
        if not data:
            raise ConnectionError("jCli closed the connection")
        out = bytearray()
        i = 0
        while i < len(data):
            b = data[i]
            if b == IAC and i + 1 < len(data):
                cmd = data[i + 1]
                if cmd in (DO, DONT, WILL, WONT) and i + 2 < len(data):
                    # Leave option negotiation unanswered: jCli works line by line in plain
                    # NVT anyway, and refusing makes Twisted log an OptionRefused traceback.
                    i += 3
                    continue
                if cmd == SB:
                    j = data.find(bytes([IAC, SE]), i)
                    i = len(data) if j < 0 else j + 2
                    continue
                i += 2
                continue
            out.append(b)
            i += 1
        self.buf += ANSI.sub(b"", bytes(out))

    def until_prompt(self):
        deadline = time.time() + self.timeout
        while not self.buf.rstrip(b"\r\n").endswith(PROMPTS) and \
                not any(self.buf.endswith(p) for p in PROMPTS):
            if time.time() > deadline:
                raise TimeoutError("no jCli prompt; got %r" % self.buf[-300:])
            self._recv()
        out, self.buf = self.buf, b""
        return out.decode("utf-8", "replace")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.until_prompt()

    def login(self, user, password):
        # With authentication on, jCli greets with "Authentication required." and no prompt.
        deadline = time.time() + self.timeout
        while b"Authentication required." not in self.buf and not self.buf.endswith(b"jcli : "):
            if time.time() > deadline:
                raise TimeoutError("no jCli greeting; got %r" % self.buf[-300:])
            self._recv()
        if self.buf.endswith(b"jcli : "):
            self.buf = b""
            return
        self.buf = b""
        self.send(user)
        out = self.send(password)
        if "Incorrect" in out or not out.endswith("jcli : "):
            raise RuntimeError("jCli login failed: %r" % out)


def answer_of(sent, out):
    """jCli echoes the typed line; the answer is what follows it, minus the prompt."""
    text = out.replace("\r", "")
    if text.startswith(sent):
        text = text[len(sent):]
    for p in ("jcli : ", "> "):
        if text.endswith(p):
            text = text[: -len(p)]
    return text.strip()


def apply_script(port, lines, user="jcliadmin", password="jclipwd", echo=print):
    c = JCli(port)
    c.login(user, password)
    transcript = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        out = c.send(line)
        ans = answer_of(line, out)
        transcript.append((line, ans))
        echo("%s -> %s" % (line, ans))
        if ERRORS.search(ans):
            raise RuntimeError("jCli refused %r: %s" % (line, ans))
    c.sock.close()
    return transcript


def render(text, values):
    def sub(m):
        k = m.group(1)
        if k not in values:
            raise KeyError("no value for ${%s}" % k)
        return values[k]
    return re.sub(r"\$\{([A-Z_]+)\}", sub, text)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="jcliadmin")
    ap.add_argument("--password", default="jclipwd")
    ap.add_argument("script")
    ap.add_argument("values", nargs="*")
    a = ap.parse_args()
    values = dict(v.split("=", 1) for v in a.values)
    lines = [l for l in open(a.script, encoding="utf-8").read().splitlines()
             if l.strip() and not l.strip().startswith("#")]
    try:
        apply_script(a.port, [render(l, values) for l in lines], a.user, a.password)
    except Exception as e:
        print("ERROR: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
