#!/usr/bin/env python3
"""Regenerate fixtures/jasmin/*.http: run a real Jasmin 0.11.0 (from $JASMIN_VENV) against
the SMSC simulator (tests/jasmin/smsc.py), point its HTTP connector at a raw capture server
on loopback that answers `ACK/Jasmin`, inject MOs, call /send, and save the exact bytes of
each HTTP request Jasmin makes (and of /send's answers). Prints what it sees; the facts are
written up in tests/jasmin/FINDINGS.md.

    bash tests/jasmin/setup.sh                     # venv, RabbitMQ vhosts
    $JASMIN_VENV/bin/python tests/jasmin/capture.py [--only NAME ...] [--keep]

Uses the RabbitMQ vhost switchboard_capture (reset on start) and its own redis-server on a free
port. Everything on 127.0.0.1.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "fixtures", "jasmin")
sys.path.insert(0, HERE)
import jcli  # noqa: E402

VENV = os.environ.get("JASMIN_VENV", "/var/tmp/switchboard-jasmin-venv")
VHOST = "switchboard_capture"


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("port %d not open" % port)


class Capture:
    """Raw HTTP capture server: stores each request's bytes; answers by policy."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (time, raw bytes)
        self.lock = threading.Lock()
        self.answers = []  # queue of (status, body, delay)
        self.default = (200, b"ACK/Jasmin", 0)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        c.settimeout(30)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(rest) < length:
                chunk = c.recv(65536)
                if not chunk:
                    break
                rest += chunk
            raw = head + b"\r\n\r\n" + rest
            with self.lock:
                self.requests.append((time.time(), raw))
                status, body, delay = self.answers.pop(0) if self.answers else self.default
            if delay:
                time.sleep(delay)
            if status is None:  # drop the connection without answering
                c.close()
                return
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (status, len(body), body))
        except OSError:
            pass
        finally:
            c.close()

    def take(self):
        with self.lock:
            r, self.requests = self.requests, []
        return r

    def wait(self, n, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    break
            time.sleep(0.05)
        return self.take()


def rabbit_reset(vhost):
    for args in (["delete_vhost", vhost], ["add_vhost", vhost],
                 ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
        r = subprocess.run(["rabbitmqctl", "-q"] + args, capture_output=True, text=True)
        if r.returncode != 0 and args[0] != "delete_vhost":
            raise RuntimeError("rabbitmqctl %s: %s%s" % (args, r.stdout, r.stderr))


class Stack:
    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="switchboard-jasmin-capture-")
        self.keep = keep
        self.procs = []
        (self.smpp_server, self.smpps_pb, self.cm_pb, self.http, self.router_pb, self.redis,
         self.jcli, self.interceptor, self.smsc, self.smsc_ctl) = free_ports(10)
        self.capture = Capture()
        self.user, self.password = "sbuser", "sbpass"

    def start(self):
        d = self.dir
        os.makedirs(os.path.join(d, "store"))
        rabbit_reset(VHOST)
        tmpl = open(os.path.join(HERE, "jasmin.cfg.tmpl"), encoding="utf-8").read()
        for k, v in {"{DIR}": d, "{SMPP_SERVER_PORT}": self.smpp_server,
                     "{SMPPS_PB_PORT}": self.smpps_pb, "{CM_PB_PORT}": self.cm_pb,
                     "{HTTP_PORT}": self.http, "{ROUTER_PB_PORT}": self.router_pb,
                     "{REDIS_PORT}": self.redis, "{JCLI_PORT}": self.jcli,
                     "{INTERCEPTOR_PORT}": self.interceptor, "{AMQP_VHOST}": VHOST,
                     "{AMQP_SPEC}": os.path.join(VENV, "share/jasmin/resource/amqp0-9-1.xml")
                     }.items():
            tmpl = tmpl.replace(k, str(v))
        open(os.path.join(d, "jasmin.cfg"), "w").write(tmpl)
        self.spawn("redis", ["redis-server", "--port", str(self.redis), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"])
        self.spawn("smsc", [os.path.join(VENV, "bin/python"), os.path.join(HERE, "smsc.py"),
                            "--smpp-port", str(self.smsc), "--control-port", str(self.smsc_ctl),
                            "--submits", os.path.join(d, "submits.jsonl"),
                            "--log", os.path.join(d, "smsc.log")])
        wait_port(self.redis)
        wait_port(self.smsc_ctl)
        env = {"PATH": "/usr/bin:/bin", "HOME": d, "LANG": "C.UTF-8", "ROOT_PATH": d,
               "LOG_PATH": d, "CONFIG_PATH": d, "STORE_PATH": os.path.join(d, "store") + "/",
               "SB_JASMIND_LOCK": os.path.join(d, "jasmind")}
        self.spawn("jasmind", [os.path.join(VENV, "bin/python"),
                               os.path.join(HERE, "run_jasmind.py"),
                               os.path.join(VENV, "bin/jasmind.py"), "-c",
                               os.path.join(d, "jasmin.cfg"), "--enable-dlr-lookup",
                               "--enable-dlr-thrower"], env=env)
        wait_port(self.jcli, 30)
        wait_port(self.http, 30)
        t0 = time.time()
        self.apply(open(os.path.join(ROOT, "config/examples/jasmin.txt")).read().splitlines(), {
            "SMSC_HOST": "127.0.0.1", "SMSC_PORT": str(self.smsc),
            "SMSC_USERNAME": "sbsmsc", "SMSC_PASSWORD": "sbsmscpw",
            "SWITCHBOARD_URL": "http://127.0.0.1:%d/inbound/sms/jasmin?token=SECRET"
                               % self.capture.port,
            "JASMIN_USER": self.user, "JASMIN_PASSWORD": self.password})
        print("jCli script applied in %.1f s" % (time.time() - t0))
        deadline = time.time() + 20
        while not self.ctl({"cmd": "status"})["binds"]:
            if time.time() > deadline:
                raise TimeoutError("Jasmin did not bind to the SMSC simulator")
            time.sleep(0.05)
        print("bound after %.1f s" % (time.time() - t0))
        # Let the smppc connector's listeners settle (bind_resp -> deliver_sm handlers)
        time.sleep(0.5)

    def spawn(self, name, argv, env=None):
        out = open(os.path.join(self.dir, name + ".out"), "wb")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=self.dir)
        self.procs.append((name, p))

    def apply(self, lines, values=None):
        values = values or {}
        lines = [jcli.render(l, values) for l in lines
                 if l.strip() and not l.strip().startswith("#")]
        return jcli.apply_script(self.jcli, lines, echo=lambda s: None)

    def ctl(self, cmd):
        s = socket.create_connection(("127.0.0.1", self.smsc_ctl), 30)
        s.sendall((json.dumps(cmd) + "\n").encode())
        f = s.makefile("rb")
        ans = json.loads(f.readline())
        s.close()
        return ans

    def inject(self, **kw):
        kw.setdefault("source_addr", "8613800138000")
        kw.setdefault("destination_addr", "10000")
        return self.ctl(dict(cmd="deliver", **kw))

    def submits(self):
        p = os.path.join(self.dir, "submits.jsonl")
        if not os.path.exists(p):
            return []
        return [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.keep:
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def raw_http(port, method, path, body=None, headers=None):
    """Send one HTTP/1.1 request, return (request bytes, response bytes)."""
    h = {"Host": "127.0.0.1:%d" % port, "Connection": "close"}
    if body is not None:
        h["Content-Type"] = "application/x-www-form-urlencoded"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    req = ("%s %s HTTP/1.1\r\n" % (method, path)).encode() + b"".join(
        ("%s: %s\r\n" % kv).encode() for kv in h.items()) + b"\r\n" + (body or b"")
    s = socket.create_connection(("127.0.0.1", port), 30)
    s.sendall(req)
    resp = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    s.close()
    return req, resp


OVERWRITE = False


def save(name, data):
    os.makedirs(FIXTURES, exist_ok=True)
    path = os.path.join(FIXTURES, name)
    if os.path.exists(path) and not OVERWRITE:
        print("  fixtures/jasmin/%s exists: kept (--overwrite to replace)" % name)
        return
    with open(path, "wb") as f:
        f.write(data)
    print("  wrote fixtures/jasmin/%s (%d bytes)" % (name, len(data)))


def show(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    print("   ", head.split(b"\r\n")[0].decode("latin-1"))
    if body:
        print("    body:", body[:400])
        try:
            print("    form:", urllib.parse.parse_qs(body.decode("latin-1"), keep_blank_values=True,
                                                     encoding="latin-1"))
        except Exception:
            pass


def mo(st, name, expect=1, wait=10, **kw):
    r = st.inject(**kw)
    print("%s: deliver_sm_resp %s" % (name, r))
    reqs = st.capture.wait(expect, wait)
    for i, (_, raw) in enumerate(reqs):
        show(raw)
        if name:
            save(name if len(reqs) == 1 else name.replace(".http", "_%d.http" % (i + 1)), raw)
    return r, reqs


def ucs2(s):
    return s.encode("utf-16-be").hex()


SCENARIOS = []


def scenario(f):
    SCENARIOS.append(f)
    return f


@scenario
def mo_basic(st):
    mo(st, "mo_gsm7.http", data_coding=0, short_message_hex=b"Hello world & more 100%?".hex())
    mo(st, "mo_ucs2.http", data_coding=8, short_message_hex=ucs2("我要投诉，宽带断网三天了"))
    mo(st, "mo_latin1.http", data_coding=3,
       short_message_hex="Grüße, café à 5€?".encode("latin-1", "replace").hex())
    # GSM 03.38 codes: @=0x00 £=0x01 é=0x05 ü=0x7E, € = escape 0x1B 0x65
    mo(st, "mo_gsm7_codes.http", data_coding=0,
       short_message_hex=bytes([0x00, 0x20, 0x01, 0x35, 0x20, 0x63, 0x61, 0x66, 0x05, 0x20, 0x7E,
                                0x20, 0x1B, 0x65]).hex())
    mo(st, "mo_dcs_0x18_ucs2_class0.http", data_coding=0x18, short_message_hex=ucs2("你好"))
    mo(st, "mo_dcs_0xF0_gsm_class0.http", data_coding=0xF0, short_message_hex=b"Flash hi".hex())
    mo(st, "mo_dcs_0x04_8bit.http", data_coding=0x04, short_message_hex="00ff10")
    mo(st, "mo_dcs_0x01_ascii.http", data_coding=0x01, short_message_hex=b"ascii text".hex())
    mo(st, "mo_message_payload.http", data_coding=0, short_message_hex="",
       message_payload_hex=(b"payload " * 30).hex())


@scenario
def mo_addresses(st):
    mo(st, "mo_plus_international_from.http", source_addr="+8613800138000", source_addr_ton=1,
       data_coding=0, short_message_hex=b"plus".hex())
    mo(st, "mo_alphanumeric_to.http", destination_addr="Service", dest_addr_ton=5,
       data_coding=0, short_message_hex=b"alnum".hex())
    # A text that looks like a delivery receipt is taken for one (Jasmin matches the text)
    r = st.inject(data_coding=0, short_message_hex=(
        b"id:123 sub:001 dlvrd:001 submit date:2601010000 done date:2601010000 stat:DELIVRD "
        b"err:000 text:hi").hex())
    reqs = st.capture.wait(1, 4)
    print("MO text shaped like a receipt: resp %s, %d thrown" % (r, len(reqs)))


@scenario
def mo_other_dcs(st):
    for dcs in (0x02, 0x06, 0x0E, 0x11, 0x24, 0x48, 0x80, 0xC0, 0xD0, 0xE0, 0xF4, 0xFF):
        r, reqs = mo(st, None, expect=1, wait=4, data_coding=dcs, short_message_hex="41424344")
        print("   dcs 0x%02X -> resp %s, %d thrown" % (dcs, r.get("command_status"), len(reqs)))
        if reqs:
            save("mo_dcs_0x%02X.http" % dcs, reqs[0][1])


@scenario
def mo_long(st):
    a = "我要投诉，宽带断网三天了，客服电话一直打不通，"
    b = "请尽快派人上门维修，谢谢。"
    p1, p2 = ucs2(a), ucs2(b)
    # 8-bit reference UDH, in order
    mo(st, None, expect=0, wait=1, data_coding=8, esm_class=0x40,
       short_message_hex="0500030a0201" + p1)
    mo(st, "mo_long_udh8_ucs2.http", expect=1, data_coding=8, esm_class=0x40,
       short_message_hex="0500030a0202" + p2)
    # 16-bit reference UDH, in order
    mo(st, "mo_long_udh16_part1.http", expect=1, data_coding=8, esm_class=0x40,
       short_message_hex="060804012c0201" + p1)
    mo(st, "mo_long_udh16_part2.http", expect=1, data_coding=8, esm_class=0x40,
       short_message_hex="060804012c0202" + p2)
    # SAR TLVs, in order
    mo(st, None, expect=0, wait=1, data_coding=8, short_message_hex=p1,
       sar_msg_ref_num=0x1234, sar_total_segments=2, sar_segment_seqnum=1)
    mo(st, "mo_long_sar_ucs2.http", expect=1, data_coding=8, short_message_hex=p2,
       sar_msg_ref_num=0x1234, sar_total_segments=2, sar_segment_seqnum=2)
    # GSM 7-bit long with 8-bit UDH
    mo(st, None, expect=0, wait=1, data_coding=0, esm_class=0x40,
       short_message_hex="050003070201" + b"My phone has had no signal ".hex())
    mo(st, "mo_long_udh8_gsm.http", expect=1, data_coding=0, esm_class=0x40,
       short_message_hex="050003070202" + b"since yesterday morning".hex())
    # Out of order: 8-bit UDH, last part first
    r, reqs = mo(st, None, expect=1, wait=3, data_coding=8, esm_class=0x40,
                 short_message_hex="0500030b0202" + p2)
    print("   out of order, part 2/2 first: %d thrown" % len(reqs))
    r, reqs = mo(st, None, expect=1, wait=5, data_coding=8, esm_class=0x40,
                 short_message_hex="0500030b0201" + p1)
    print("   out of order, then part 1/2: %d thrown" % len(reqs))
    for i, (_, raw) in enumerate(reqs):
        save("mo_long_udh8_out_of_order_%d.http" % (i + 1), raw)
    # Out of order, 3 parts: 1, 3, 2
    for seq in (1, 3, 2):
        r, reqs = mo(st, None, expect=1, wait=3, data_coding=0, esm_class=0x40,
                     short_message_hex="0500030c03%02x" % seq + ("part%d " % seq).encode().hex())
        print("   3 parts, part %d: %d thrown" % (seq, len(reqs)))
        for i, (_, raw) in enumerate(reqs):
            save("mo_long_udh8_3parts_132_after_part%d.http" % seq, raw)
    # Out of order SAR: 2 then 1
    for seq in (2, 1):
        r, reqs = mo(st, None, expect=1, wait=3, data_coding=0,
                     short_message_hex=("sar%d " % seq).encode().hex(),
                     sar_msg_ref_num=0x4321, sar_total_segments=2, sar_segment_seqnum=seq)
        print("   SAR out of order, part %d: %d thrown" % (seq, len(reqs)))
        for i, (_, raw) in enumerate(reqs):
            save("mo_long_sar_out_of_order_after_part%d.http" % seq, raw)
    # 8-bit UDH with class-2 DCS (0x12? no: 0xF2 = GSM 7-bit class 2): not reassembled?
    mo(st, "mo_long_udh8_class2_part1.http", expect=1, wait=3, data_coding=0xF2, esm_class=0x40,
       short_message_hex="050003090201" + b"class2 one ".hex())


@scenario
def mo_get(st):
    st.apply(["httpccm -a", "cid sbget",
              "url http://127.0.0.1:%d/inbound/sms/jasmin?token=SECRET" % st.capture.port,
              "method GET", "ok", "morouter -r 0", "morouter -a", "type DefaultRoute",
              "connector http(sbget)", "ok"])
    mo(st, "mo_ucs2_get.http", data_coding=8, short_message_hex=ucs2("我要投诉，宽带断网三天了"))
    mo(st, "mo_gsm7_get.http", data_coding=0, short_message_hex=b"Hello world & more 100%?".hex())
    st.apply(["morouter -r 0", "morouter -a", "type DefaultRoute", "connector http(switchboard)",
              "ok"])


@scenario
def mo_retries(st):
    cap = st.capture
    # 1. answers 500 twice, then ACK
    cap.answers = [(500, b"Internal error", 0), (500, b"Internal error", 0)]
    r = st.inject(data_coding=0, short_message_hex=b"retry 500".hex())
    reqs = cap.wait(3, 15)
    times = [t for t, _ in reqs]
    ids = [urllib.parse.parse_qs(raw.partition(b"\r\n\r\n")[2].decode())["id"][0] for _, raw in reqs]
    print("500,500,ACK: %d throws, ids %s, gaps %s" % (
        len(reqs), ids, [round(b - a, 2) for a, b in zip(times, times[1:])]))
    for i, (_, raw) in enumerate(reqs):
        save("mo_retry_after_500_throw%d.http" % (i + 1), raw)
    # 2. body not ACK/Jasmin (200 OK "ok")
    cap.answers = [(200, b"ok", 0)]
    st.inject(data_coding=0, short_message_hex=b"retry body".hex())
    reqs = cap.wait(2, 10)
    print("200 'ok' then ACK: %d throws" % len(reqs))
    # 3. 404: not retried
    cap.answers = [(404, b"Not found", 0)]
    st.inject(data_coding=0, short_message_hex=b"retry 404".hex())
    reqs = cap.wait(2, 5)
    print("404: %d throws (expect 1)" % len(reqs))
    # 4. 400: retried
    cap.answers = [(400, b"bad", 0)]
    st.inject(data_coding=0, short_message_hex=b"retry 400".hex())
    reqs = cap.wait(2, 6)
    print("400 then ACK: %d throws" % len(reqs))
    # 5. always 503: how many throws in total, then dropped
    cap.default = (503, b"down", 0)
    st.inject(data_coding=0, short_message_hex=b"always 503".hex())
    reqs = cap.wait(20, 14)
    times = [t for t, _ in reqs]
    print("always 503: %d throws, gaps %s" % (
        len(reqs), [round(b - a, 2) for a, b in zip(times, times[1:])]))
    cap.default = (200, b"ACK/Jasmin", 0)
    # 6. slow answer (> http_timeout 5 s): same id thrown again while the first is in flight
    cap.answers = [(200, b"ACK/Jasmin", 7)]
    st.inject(data_coding=0, short_message_hex=b"slow".hex())
    reqs = cap.wait(2, 15)
    times = [t for t, _ in reqs]
    ids = [urllib.parse.parse_qs(raw.partition(b"\r\n\r\n")[2].decode())["id"][0] for _, raw in reqs]
    print("slow 7 s answer: %d throws, ids %s, gaps %s" % (
        len(reqs), ids, [round(b - a, 2) for a, b in zip(times, times[1:])]))
    for i, (_, raw) in enumerate(reqs):
        save("mo_retry_after_timeout_throw%d.http" % (i + 1), raw)
    time.sleep(3)
    extra = cap.take()
    print("   later: %d more" % len(extra))
    # 7. connection dropped without an answer
    cap.answers = [(None, b"", 0)]
    st.inject(data_coding=0, short_message_hex=b"dropped".hex())
    reqs = cap.wait(2, 8)
    print("dropped connection then ACK: %d throws" % len(reqs))
    # 8. endpoint down (port closed) for ~3 s, then up
    port = free_ports(1)[0]
    st.apply(["httpccm -a", "cid sbdown", "url http://127.0.0.1:%d/inbound/sms/jasmin" % port,
              "method POST", "ok", "morouter -r 0", "morouter -a", "type DefaultRoute",
              "connector http(sbdown)", "ok"])
    t0 = time.time()
    st.inject(data_coding=0, short_message_hex=b"while down".hex())
    time.sleep(3)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(5)
    srv.settimeout(10)
    try:
        c, _ = srv.accept()
        data = c.recv(65536)
        print("endpoint down 3 s: arrived %.1f s after injection" % (time.time() - t0))
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nACK/Jasmin")
        c.close()
        save("mo_after_endpoint_down.http", data)
    except socket.timeout:
        print("endpoint down 3 s: never arrived")
    srv.close()
    st.apply(["morouter -r 0", "morouter -a", "type DefaultRoute", "connector http(switchboard)",
              "ok"])


def send(st, name, form, method="POST"):
    body = urllib.parse.urlencode(form).encode()
    if method == "POST":
        req, resp = raw_http(st.http, "POST", "/send", body)
    else:
        req, resp = raw_http(st.http, "GET", "/send?" + body.decode())
    print("%s: %s" % (name, resp.split(b"\r\n")[0].decode()), resp.partition(b"\r\n\r\n")[2][:200])
    if name:
        save(name, req + b"\n\n#### response ####\n" + resp)
    return resp


@scenario
def mt_send(st):
    cap = st.capture
    u, p = st.user, st.password
    dlr_url = "http://127.0.0.1:%d/dlr/jasmin?msg=42&token=DLRSECRET" % cap.port
    n0 = len(st.submits())
    send(st, "send_ok_gsm_dlr3_post.http", {"username": u, "password": p, "to": "8613800138000",
         "from": "10000", "coding": "0", "content": "Your case SB00000042 is open @ 50% £",
         "dlr": "yes", "dlr-url": dlr_url, "dlr-level": "3", "dlr-method": "POST"})
    reqs = cap.wait(2, 10)
    for i, (_, raw) in enumerate(reqs):
        show(raw)
        save("dlr_level3_post_%d.http" % (i + 1), raw)
    send(st, "send_ok_ucs2_hex_dlr3_get.http", {"username": u, "password": p,
         "to": "8613800138000", "from": "10000", "coding": "8",
         "hex-content": ucs2("投诉已受理，编号SB00000042"), "dlr": "yes", "dlr-url": dlr_url,
         "dlr-level": "3", "dlr-method": "GET"})
    reqs = cap.wait(2, 10)
    for i, (_, raw) in enumerate(reqs):
        show(raw)
        save("dlr_level3_get_%d.http" % (i + 1), raw)
    for level in ("1", "2"):
        send(st, None, {"username": u, "password": p, "to": "8613800138000", "from": "10000",
             "content": "level " + level, "dlr-url": dlr_url, "dlr-level": level,
             "dlr-method": "POST"})
        reqs = cap.wait(3, 5)
        print("   dlr-level %s: %d DLR requests" % (level, len(reqs)))
        for i, (_, raw) in enumerate(reqs):
            show(raw)
            save("dlr_level%s_post_%d.http" % (level, i + 1), raw)
    # undelivered receipt
    st.ctl({"cmd": "receipts", "stat": "UNDELIV", "err": "001"})
    send(st, None, {"username": u, "password": p, "to": "8613800138000", "from": "10000",
         "content": "undeliv", "dlr-url": dlr_url, "dlr-level": "3", "dlr-method": "POST"})
    reqs = cap.wait(2, 8)
    for i, (_, raw) in enumerate(reqs):
        show(raw)
        save("dlr_level3_undeliv_%d.http" % (i + 1), raw)
    st.ctl({"cmd": "receipts", "stat": "DELIVRD"})
    # SMSC refuses the submit_sm (ESME_RSUBMITFAIL 0x45)
    st.ctl({"cmd": "submit_status", "statuses": [0x45]})
    send(st, None, {"username": u, "password": p, "to": "8613800138000", "from": "10000",
         "content": "refused", "dlr-url": dlr_url, "dlr-level": "3", "dlr-method": "POST"})
    reqs = cap.wait(2, 8)
    for i, (_, raw) in enumerate(reqs):
        show(raw)
        save("dlr_submit_refused_%d.http" % (i + 1), raw)
    # /send answers
    send(st, "send_auth_failure.http", {"username": u, "password": "wrong", "to": "8613800138000",
         "content": "x"})
    send(st, "send_unknown_user.http", {"username": "nobody", "password": "x", "to": "1",
         "content": "x"})
    send(st, "send_missing_to.http", {"username": u, "password": p, "content": "x"})
    send(st, "send_no_content.http", {"username": u, "password": p, "to": "8613800138000"})
    send(st, "send_bad_dlr_level.http", {"username": u, "password": p, "to": "8613800138000",
         "content": "x", "dlr-url": dlr_url, "dlr-level": "4"})
    send(st, "send_ok_get.http", {"username": u, "password": p, "to": "8613800138000",
         "from": "10000", "content": "via GET"}, method="GET")
    long_zh = "投诉已受理，编号SB00000042。" * 30  # 600 chars -> 9+ UCS-2 parts
    send(st, "send_long_over_max_parts_ucs2.http", {"username": u, "password": p,
         "to": "8613800138000", "from": "10000", "coding": "8", "hex-content": ucs2(long_zh)})
    send(st, "send_long_3_parts_ucs2.http", {"username": u, "password": p,
         "to": "8613800138000", "from": "10000", "coding": "8",
         "hex-content": ucs2("投诉已受理，编号SB00000042。" * 9)})
    send(st, "send_long_over_max_parts_gsm.http", {"username": u, "password": p,
         "to": "8613800138000", "from": "10000", "content": "x" * 1000})
    send(st, "send_utf8_content_coding8.http", {"username": u, "password": p,
         "to": "8613800138000", "from": "10000", "coding": "8", "content": "你好"})
    send(st, "send_plus_prefix.http", {"username": u, "password": p, "to": "+8613800138000",
         "from": "+10000", "content": "plus"})
    time.sleep(2)
    cap.take()
    subs = st.submits()[n0:]
    print("SMSC received %d submit_sm:" % len(subs))
    for s in subs:
        print("   ", {k: s[k] for k in ("source_addr", "destination_addr", "data_coding",
                                        "esm_class", "registered_delivery", "udh_hex", "tlvs",
                                        "source_addr_ton", "dest_addr_ton")},
              bytes.fromhex(s["payload_hex"])[:40])
    save("smsc_submits_mt_send.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n"
                                                for s in subs).encode())
    # throughput quota: a second user with http_throughput 1 (1 msg/s)
    st.apply(["user -a", "username sbslow", "password sbslowpw", "uid sbslow",
              "gid switchboard", "mt_messaging_cred quota http_throughput 1", "ok"])
    for i in range(3):
        resp = send(st, "send_throughput_exceeded.http" if i == 1 else None,
                    {"username": "sbslow", "password": "sbslowpw", "to": "8613800138000",
                     "content": "fast %d" % i})
    # no route: remove the MT route
    st.apply(["mtrouter -r 0"])
    send(st, "send_no_route.http", {"username": u, "password": p, "to": "8613800138000",
         "content": "no route"})
    st.apply(["mtrouter -a", "type DefaultRoute", "connector smppc(smsc)", "rate 0.00", "ok"])
    time.sleep(1)
    cap.take()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace existing fixtures (new uuids and ports: noisy diffs)")
    a = ap.parse_args()
    global OVERWRITE
    OVERWRITE = a.overwrite
    st = Stack(keep=a.keep)
    try:
        t0 = time.time()
        st.start()
        print("stack up in %.1f s (%s)" % (time.time() - t0, st.dir))
        for f in SCENARIOS:
            if a.only and f.__name__ not in a.only:
                continue
            print("==== %s" % f.__name__)
            f(st)
    finally:
        st.stop()


if __name__ == "__main__":
    main()
