#!/usr/bin/env bash
# The agents' work queue (`GET /api/v1/cases`) on a large SQLite database: release build, the
# database filled through the real intake (benches/kannel_mo.lua for FILL seconds), then the
# older 80 % of its cases closed, as in a service that has run for a while. wrk asks for the
# first page and for a page deep behind a cursor, with 4 connections.
#
#   bash benches/work_queue.sh [FILL_SECONDS] [DURATION_SECONDS]   (default 25 and 10; needs wrk)
#   BIN=path/to/switchboard bash benches/work_queue.sh             (another build, for a before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
FILL="${1:-25}"
DUR="${2:-10}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin switchboard >&2
  BIN=target/release/switchboard
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
export SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$P" SWITCHBOARD__DATABASE__URL="sqlite://$work/sb.db" \
  SWITCHBOARD__SMS__OUTBOUND__PAUSED=true SWITCHBOARD_LOG=warn
up() {
  "$BIN" serve &
  SB=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$P/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not come up" >&2; exit 1
}
up
wrk -t2 -c64 -d"${FILL}s" -s benches/kannel_mo.lua "http://127.0.0.1:$P" >/dev/null
kill -TERM $SB; wait $SB || true
python3 - "$work/sb.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n = c.execute("select max(id) from cases").fetchone()[0]
c.execute("update cases set status = 'closed', resolved_at = opened_at + 1000 where id <= ?", (int(n * 0.8),))
c.commit()
print("cases:", dict(c.execute("select status, count(*) from cases group by status").fetchall()), file=sys.stderr)
PY
TOKEN=$("$BIN" token create --name bench --role agent | tail -1)
up
deep=$(curl -fs -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P/api/v1/cases?limit=500" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("next") or "")')
cat > "$work/auth.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
for path in "/api/v1/cases" "/api/v1/cases?after=$deep"; do
  out=$(wrk -t1 -c4 -d"${DUR}s" --latency -s "$work/auth.lua" "http://127.0.0.1:$P$path")
  non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  echo "RESULT $path: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s, p50 $(awk '$1=="50%" {print $2}' <<<"$out"), p99 $(awk '$1=="99%" {print $2}' <<<"$out"), non-2xx ${non2xx:-0}"
done
