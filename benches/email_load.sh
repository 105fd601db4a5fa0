#!/usr/bin/env bash
# Email benchmarks (issue #3), release build, SQLite with full durability:
#  1. inbound: wrk POSTs ~20 KB emails to /inbound/email (parse + classify + case + ack queued)
#  2. outbound: the gateway sends N acks to a local SMTP sink (tests/smtp/sink.py, aiosmtpd),
#     next to a trivial client (Python smtplib, one connection) sending N mails to the same sink.
#
#   bash benches/email_load.sh [DURATION_SECONDS] [N_OUTBOUND]    (needs wrk, python3-aiosmtpd)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-15}"
N="${2:-2000}"
cargo build --release --bin switchboard >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; exit 1; }

# 1. inbound
P=$(port)
SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$P" SWITCHBOARD__DATABASE__URL="sqlite://$work/in.db" \
  SWITCHBOARD__EMAIL__SMTP__ENABLED=true SWITCHBOARD__EMAIL__SMTP__PORT=9 SWITCHBOARD__EMAIL__SMTP__BACKOFF_BASE_MS=600000 \
  SWITCHBOARD__SMS__OUTBOUND__PAUSED=true SWITCHBOARD_LOG=error target/release/switchboard serve &
SB=$!
wait_up "$P"
wrk -t2 -c32 -d"${DUR}s" --latency -s benches/email.lua "http://127.0.0.1:$P" > "$work/in.txt"
kill -TERM $SB; wait $SB || true
cat "$work/in.txt"
rows=$(python3 -c "import sqlite3;c=sqlite3.connect('$work/in.db');print(*c.execute(\"select (select count(*) from messages where direction='in'),(select count(*) from cases),(select count(*) from outbox)\").fetchone())")
echo "RESULT inbound 20KB email: $(awk '/Requests\/sec/ {print $2}' "$work/in.txt") emails/s, p99 $(awk '$1=="99%" {print $2}' "$work/in.txt"); in/cases/outbox rows: $rows"

# 2. outbound: start the sink, queue N acks with the sender pointed at it, time until all arrive.
SP=$(port)

/usr/bin/python3 tests/smtp/sink.py --port "$SP" --maildir "$work/md1" > "$work/sink1.log" 2>&1 &
SINK=$!
for _ in $(seq 1 50); do grep -q READY "$work/sink1.log" && break; sleep 0.1; done
P=$(port)
SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$P" SWITCHBOARD__DATABASE__URL="sqlite://$work/out.db" \
  SWITCHBOARD__EMAIL__FROM=service@gw.test SWITCHBOARD__EMAIL__ACK_LIMIT=1000000 \
  SWITCHBOARD__EMAIL__SMTP__PORT="$SP" SWITCHBOARD__EMAIL__SMTP__RATE_PER_SEC=100000 SWITCHBOARD__EMAIL__SMTP__CONCURRENCY=8 \
  SWITCHBOARD__SMS__OUTBOUND__PAUSED=true SWITCHBOARD_LOG=error target/release/switchboard serve &
SB=$!
wait_up "$P"
python3 - "$P" "$N" "$work/md1" <<'PY'
import sys, time, os, urllib.request, concurrent.futures
port, n, md = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def post(i):
    msg = (f"From: c{i}@example.cn\r\nTo: customer-service@gw.test\r\nSubject: 宽带故障 {i}\r\n"
           f"Message-ID: <o{i}@example.cn>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n宽带断网了，请尽快维修。\r\n").encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/inbound/email", data=msg, headers={"Content-Type": "message/rfc822"})
    urllib.request.urlopen(req).read()
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    list(ex.map(post, range(n)))
t_posted = time.time()
new = os.path.join(md, "new")
while len(os.listdir(new)) < n:
    if time.time() - t0 > 300: sys.exit("timeout waiting for the sink")
    time.sleep(0.05)
t1 = time.time()
print(f"RESULT gateway -> sink: {n} acks in {t1-t0:.2f} s = {n/(t1-t0):.0f} msg/s (POSTs done after {t_posted-t0:.2f} s)")
PY
kill -TERM $SB; wait $SB || true
python3 - "$SP" "$N" "$work/md1" <<'PY'
import sys, time, smtplib, os
from email.message import EmailMessage
port, n, md = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
before = len(os.listdir(os.path.join(md, "new")))
t0 = time.time()
with smtplib.SMTP("127.0.0.1", port) as s:
    for i in range(n):
        m = EmailMessage()
        m["From"] = "service@gw.test"; m["To"] = f"c{i}@example.cn"; m["Subject"] = f"[SB{i:08}] 您的来信已受理"
        m["Message-ID"] = f"<t{i}@gw.test>"; m["Auto-Submitted"] = "auto-replied"
        m.set_content("您好，您的故障报修已受理，工单号SB00000001。")
        m.add_alternative("<p>您好，您的故障报修已受理，工单号<strong>SB00000001</strong>。</p>", subtype="html")
        s.send_message(m)
t1 = time.time()
print(f"RESULT trivial smtplib client -> sink: {n} mails in {t1-t0:.2f} s = {n/(t1-t0):.0f} msg/s")
PY
kill $SINK 2>/dev/null || true
