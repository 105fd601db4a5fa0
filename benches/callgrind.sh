#!/usr/bin/env bash
# Instructions a message, per thread, under callgrind (valgrind): counts, not seconds, so two
# builds compare the same whatever else the machine is doing. Two runs of the release build:
# a 500-message warm-up alone, then the warm-up and N more messages (benches/drive_mo.py, 8
# connections); the difference over N is what one message costs. SQLite with full durability,
# outbound paused (as benches/load.sh).
#
#   bash benches/callgrind.sh [N=4000]          (needs valgrind: apt-get install -y valgrind)
#   BIN=path/to/switchboard bash benches/callgrind.sh   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-4000}"
command -v valgrind >/dev/null || { echo "valgrind is required: apt-get install -y valgrind" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin switchboard >&2
  BIN=target/release/switchboard
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # $1 = messages after the warm-up, $2 = output prefix
  local db; db=$(mktemp -d -p "$work")
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$port" SWITCHBOARD__DATABASE__URL="sqlite://$db/sb.db" \
    SWITCHBOARD__SMS__OUTBOUND__PAUSED=true SWITCHBOARD_LOG=warn \
    valgrind --tool=callgrind --separate-threads=yes --dump-instr=no \
      --callgrind-out-file="$2" "$BIN" serve 2>"$db/valgrind.log" &
  local pid=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  python3 benches/drive_mo.py "$port" 500 8 w
  [ "$1" -gt 0 ] && python3 benches/drive_mo.py "$port" "$1" 8 m
  kill -TERM "$pid"; wait "$pid" || true
}
run 0 "$work/zero"
run "$N" "$work/full"
python3 - "$work" "$N" <<'PY'
import glob, os, re, sys
work, n = sys.argv[1], int(sys.argv[2])
def threads(prefix):
    out = {}
    for f in glob.glob(f"{prefix}-*"):
        text = open(f, errors="replace").read()
        total = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        out[os.path.basename(f).split("-")[-1]] = int(total.group(1)) if total else 0
    return out
zero, full = threads(f"{work}/zero"), threads(f"{work}/full")
per = {t: (full[t] - zero.get(t, 0)) / n for t in full}
print(f"RESULT instructions a message, all threads: {sum(per.values()):,.0f}")
# Threads by their start order; the busiest is the SQLite writer, the next two the tokio workers.
for t, v in sorted(per.items(), key=lambda kv: -kv[1])[:4]:
    print(f"RESULT   thread {t}: {v:,.0f}")
PY
