#!/usr/bin/env python3
"""Posts N Kannel-dialect MOs (the texts of kannel_mo.lua, senders spread over 200,000
customers) through C keep-alive connections and checks each answer is 2xx. A fixed count, so
two builds can be compared instruction for instruction (benches/callgrind.sh).

    python3 benches/drive_mo.py PORT N [C=8] [ID_PREFIX=d]
"""
import http.client
import random
import sys
import threading
import urllib.parse

port, n = int(sys.argv[1]), int(sys.argv[2])
conns = int(sys.argv[3]) if len(sys.argv) > 3 else 8
prefix = sys.argv[4] if len(sys.argv) > 4 else "d"
TEXTS = [
    "我要投诉，宽带三天没修好",
    "手机没信号了怎么办",
    "请问一下最便宜的套餐多少钱",
    "My broadband has been down since this morning, please send someone to fix the line",
]
failed = []


def worker(t):
    rng = random.Random(f"{prefix}{t}")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for i in range(t, n, conns):
        q = urllib.parse.urlencode({
            "id": f"{prefix}{t}-{i}", "from": 8613000000000 + rng.randint(0, 199999),
            "to": "10000", "ts": "1795645874", "coding": "0", "charset": "UTF-8",
            "text": TEXTS[i % len(TEXTS)], "smsc": "bench", "udh": "",
        })
        c.request("GET", "/inbound/sms/kannel?" + q)
        r = c.getresponse()
        r.read()
        if r.status >= 300:
            failed.append(r.status)


threads = [threading.Thread(target=worker, args=(t,)) for t in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if failed:
    sys.exit(f"{len(failed)} requests failed: {sorted(set(failed))}")
