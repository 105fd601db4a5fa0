#!/usr/bin/env bash
# Bounded fuzzing: builds the cargo-fuzz targets in fuzz/ and runs each for FUZZ_SECS seconds
# (default 20) from its seed corpus in fixtures/fuzz/<target>/, FUZZ_JOBS at a time (default:
# one per core). Any crash (panic, failed check, abort, stack overflow), hang (one input over
# 10 s) or out-of-memory (over 2 GiB) fails the script, which prints the input that caused it.
# Every such input becomes a file in fixtures/fuzz/regressions/ (see fixtures/fuzz/README.md).
#
#   bash .ci/fuzz.sh                 # all targets
#   FUZZ_SECS=300 bash .ci/fuzz.sh email kannel
#
# Stable toolchain: cargo-fuzz with `--sanitizer none` (the sanitizers need nightly's -Z flags);
# coverage-guided libFuzzer all the same. cargo-fuzz is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
FUZZ_SECS="${FUZZ_SECS:-20}"
FUZZ_JOBS="${FUZZ_JOBS:-$(nproc)}"
CARGO_FUZZ_VERSION=0.13.2
ALL=(email kannel jasmin twilio generic dlr segment rules phone)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

start=$(date +%s)
echo "== building the fuzz targets (release, --sanitizer none)"
(cd fuzz && cargo fuzz build --sanitizer none)
echo "   built in $(($(date +%s) - start)) s"

bin_dir="fuzz/target/x86_64-unknown-linux-gnu/release"
work="fuzz/target/ci"
rm -rf "$work"

# Fuzzes one target: its output goes to $work/<target>.log, its exit code to <target>.rc.
run_one() {
  local t=$1 max_len=65536 rc=0
  # Whole emails are bigger than webhook requests (email.max_bytes itself is 10 MiB).
  [ "$t" = email ] && max_len=1048576
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  "$bin_dir/$t" \
    -max_total_time="$FUZZ_SECS" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 \
    "$work/corpus/$t" "fixtures/fuzz/$t" >"$work/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t.rc"
}

for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "unknown fuzz target $t (known: ${ALL[*]})" >&2; exit 2; }
done
echo "== fuzzing ${targets[*]}: ${FUZZ_SECS} s each, $FUZZ_JOBS at a time"
mkdir -p "$work"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n || true; done
  run_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  rc=$(cat "$work/$t.rc" 2>/dev/null || echo "?")
  inputs=$(find "$work/artifacts/$t" -type f | sort)
  runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$work/$t.log")
  if [ "$rc" = 0 ] && [ -z "$inputs" ]; then
    echo "   $t: ok (${runs:-?} inputs run)"
    continue
  fi
  failed+=("$t")
  echo "   $t: FAILED (exit code $rc)"
  awk '/panicked at/ {print; getline; print; next}
       /==switchboard-fuzz==|ERROR: libFuzzer|^SUMMARY/ {print}' "$work/$t.log" |
    head -n 12 | sed 's/^/     /'
  for f in $inputs; do
    echo "     crashing input: $f"
    echo "       reproduce: $bin_dir/$t $f"
    echo "       minimise:  (cd fuzz && cargo fuzz tmin --sanitizer none $t ../$f)"
  done
  echo "     full log: $work/$t.log"
done

echo "== fuzzing took $(($(date +%s) - start)) s in all (build included)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
