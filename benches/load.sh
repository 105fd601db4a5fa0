#!/usr/bin/env bash
# Load benchmark of the inbound SMS path (issue #2). Release build, SQLite with full
# durability (WAL, synchronous=FULL, group commit), outbound paused so acks are queued but not
# sent. wrk posts Kannel-dialect MOs with 64 connections; the same run measures the bare axum
# baseline (one row per request, group commit) and prints the ratio.
#
#   bash benches/load.sh [DURATION_SECONDS]      (default 20; needs wrk: apt-get install wrk)
#   BIN=path/to/switchboard bash benches/load.sh   (another build, for a before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-20}"
CONNS=64
THREADS=2
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin switchboard --example baseline_server >&2
  BIN=target/release/switchboard
else
  cargo build --release --example baseline_server >&2
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server on $1 did not come up" >&2; exit 1; }
run_wrk() { wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency -s benches/kannel_mo.lua "http://127.0.0.1:$1" ; }
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1=="99%" {print $2}'; }

# 1. switchboard
P=$(port)
SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$P" SWITCHBOARD__DATABASE__URL="sqlite://$work/sb.db" \
  SWITCHBOARD__SMS__OUTBOUND__PAUSED=true SWITCHBOARD_LOG=warn \
  "$BIN" serve &
SB=$!
wait_up "$P" /readyz
run_wrk "$P" > "$work/sb.txt"
kill -TERM $SB; wait $SB || true
sb_rps=$(rps < "$work/sb.txt"); sb_p99=$(p99 < "$work/sb.txt")
non2xx=$(awk '/Non-2xx/ {print $4}' "$work/sb.txt"); non2xx=${non2xx:-0}
stored=$(python3 - "$work/sb.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(*c.execute("select (select count(*) from messages where direction='in'), (select count(*) from cases), (select count(*) from outbox)").fetchone())
PY
)

# 2. baseline
B=$(port)
target/release/examples/baseline_server "127.0.0.1:$B" "$work/base.db" 2>/dev/null &
BASE=$!
# Wait until it accepts connections (a fixed sleep lost a run on a busy machine).
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$B") 2>/dev/null && break; sleep 0.1; done
run_wrk "$B" > "$work/base.txt"
kill $BASE; wait $BASE 2>/dev/null || true
b_rps=$(rps < "$work/base.txt"); b_p99=$(p99 < "$work/base.txt")

echo "== switchboard (Kannel GET, intake: stored + classified + case + ack queued)"; cat "$work/sb.txt"
echo "== baseline (bare axum, one row per request, group commit)"; cat "$work/base.txt"
ratio=$(python3 -c "print(f'{float($sb_rps)/float($b_rps):.2f}')")
echo
echo "RESULT machine=$(nproc)cores duration=${DUR}s connections=$CONNS"
echo "RESULT switchboard: ${sb_rps} msg/s, p99 ${sb_p99}, non-2xx ${non2xx}; rows in/cases/outbox: ${stored}"
echo "RESULT baseline:    ${b_rps} req/s, p99 ${b_p99}"
echo "RESULT ratio switchboard/baseline: ${ratio}"
