#!/usr/bin/python3
"""Test SMTP sink for switchboard (aiosmtpd, Debian package python3-aiosmtpd).

    python3 tests/smtp/sink.py --port N --maildir DIR [--host 127.0.0.1]
                               [--tempfail RCPT ...] [--permfail RCPT ...]
                               [--tls starttls|implicit --tls-cert PEM --tls-key PEM]

* Accepts every recipient except:
    --tempfail addresses -> RCPT answered "451 4.3.0 try again later"
    --permfail addresses -> RCPT answered "550 5.1.1 no such user"
  (address match is case-insensitive; the flags take one or more addresses and may repeat).
* --tls starttls: offers STARTTLS and refuses MAIL before it (530); --tls implicit: TLS from the
  first byte (SMTPS, as on port 465). Certificate and key from --tls-cert / --tls-key.
* Each accepted message (one per DATA, whatever the number of recipients) is written to the
  Maildir DIR (mailbox.Maildir, created if missing) as the exact DATA bytes received (CRLF line
  endings, dot-unstuffed), preceded by three added header lines:
      X-Sink-Mail-From: <sender>          (<> for the null sender)
      X-Sink-Rcpt-To: <a@x>, <b@y>        (accepted recipients only)
      X-Sink-Peer: 127.0.0.1:54321
      X-Sink-TLS: TLSv1.3                 (the TLS version of the session, or "none")
* Prints "READY <port>" (flushed) once listening; --port 0 picks a free port and prints it.
* Logs one line per transaction to stdout:
      TXN peer=... from=<...> accepted=<...>,<...> rejected=<...>:451,<...>:550 result=delivered size=N key=...
  result is "delivered", or "no-data" when the transaction ended (RSET, QUIT, new MAIL,
  disconnect) without a message.
* SIGTERM / SIGINT: stop listening and exit 0.

Limits inherited from aiosmtpd: lines longer than 1000 octets are refused ("500 Line too
long"); messages over 32 MiB are refused (552).
"""
import os
import sys

try:
    from aiosmtpd.smtp import SMTP
except ImportError:  # e.g. a pyenv/venv python3 first on PATH: use Debian's interpreter
    if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

import argparse
import asyncio
import mailbox
import signal
import ssl
import time


def log(line):
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stdout.write("%s %s\n" % (ts, line))
    sys.stdout.flush()


class Handler:
    def __init__(self, maildir, tempfail, permfail):
        self.maildir = maildir
        self.tempfail = {a.lower() for a in tempfail}
        self.permfail = {a.lower() for a in permfail}

    # per-session transaction state lives on the session object
    @staticmethod
    def _txn(session):
        return getattr(session, "sink_txn", None)

    def finish(self, session, result, extra=""):
        txn = self._txn(session)
        if txn is None:
            return
        session.sink_txn = None
        peer = "%s:%s" % tuple(session.peer[:2]) if session.peer else "?"
        log("TXN peer=%s from=<%s> accepted=%s rejected=%s result=%s%s" % (
            peer, txn["from"],
            ",".join("<%s>" % a for a in txn["accepted"]) or "-",
            ",".join("<%s>:%s" % r for r in txn["rejected"]) or "-",
            result, extra))

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.finish(session, "no-data")  # a previous transaction that never sent DATA
        # aiosmtpd represents the null sender as "<>" (and needs a non-empty mail_from)
        session.sink_txn = {"from": "" if address == "<>" else address, "accepted": [], "rejected": []}
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        txn = self._txn(session)
        a = address.lower()
        if a in self.tempfail:
            txn["rejected"].append((address, 451))
            return "451 4.3.0 try again later"
        if a in self.permfail:
            txn["rejected"].append((address, 550))
            return "550 5.1.1 no such user"
        txn["accepted"].append(address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        peer = "%s:%s" % tuple(session.peer[:2]) if session.peer else "?"
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        tls = ssl_object.version() if ssl_object is not None else "none"
        head = ("X-Sink-Mail-From: <%s>\r\nX-Sink-Rcpt-To: %s\r\nX-Sink-Peer: %s\r\n"
                "X-Sink-TLS: %s\r\n" % (
                    sender, ", ".join("<%s>" % r for r in envelope.rcpt_tos), peer, tls)
                ).encode("utf-8", "surrogateescape")
        data = envelope.original_content
        key = self.maildir.add(head + data)
        self.finish(session, "delivered", " size=%d key=%s" % (len(data), key))
        return "250 2.0.0 OK queued as %s" % key

    async def handle_RSET(self, server, session, envelope):
        self.finish(session, "no-data")
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.finish(session, "no-data")
        return "221 Bye"


class SinkSMTP(SMTP):
    def connection_lost(self, error):
        self.event_handler.finish(self.session, "no-data")
        super().connection_lost(error)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--tempfail", nargs="+", action="extend", default=[], metavar="RCPT")
    ap.add_argument("--permfail", nargs="+", action="extend", default=[], metavar="RCPT")
    ap.add_argument("--tls", choices=["starttls", "implicit"])
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    ctx = None
    if args.tls:
        if not (args.tls_cert and args.tls_key):
            ap.error("--tls needs --tls-cert and --tls-key")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    starttls = {"tls_context": ctx, "require_starttls": True} if args.tls == "starttls" else {}

    md = mailbox.Maildir(args.maildir, create=True)
    handler = Handler(md, args.tempfail, args.permfail)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkSMTP(handler, enable_SMTPUTF8=True, decode_data=False,
                         hostname="sink.test", ident="switchboard test sink", **starttls),
        host=args.host, port=args.port, ssl=ctx if args.tls == "implicit" else None)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY %d" % port, flush=True)
    await stop.wait()
    server.close()
    try:  # Python >= 3.12 also waits for open client connections here
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass
    log("STOP")


if __name__ == "__main__":
    asyncio.run(main())
