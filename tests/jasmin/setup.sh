#!/usr/bin/env bash
# Everything the real-Jasmin tests (tests/it/jasmin_e2e.rs, tests/it/support/jasmin.rs) need, made
# ready idempotently; called by tests/run.sh before the tests. Fails loudly (non-zero exit,
# the reason on stderr) when something cannot be had; never skips.
#
#   1. Debian packages: redis-server, rabbitmq-server, python3-venv (apt-get, needs root).
#   2. A virtualenv at ${JASMIN_VENV:-/var/tmp/switchboard-jasmin-venv} (outside the repo)
#      with jasmin==0.11.0 and its dependencies pinned by tests/jasmin/requirements.txt
#      (0.11.1 loses every DLR upstream), plus Jasmin's AMQP 0-9-1 spec file taken from
#      its PyPI source distribution (the wheel lacks misc/config/resource/).
#   3. Redis answering on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672 (guest/guest),
#      started when down.
#   4. RabbitMQ vhosts of the tests' own with guest permissions: switchboard_test (manual
#      runs) and switchboard_test_0 .. _7, one per concurrently running test (the harness
#      locks one and empties it before starting jasmind).
#
# The harness starts its own redis-server per jasmind (Jasmin 0.11.0 ignores redis dbid
# without a password, so two jasminds would share db 0), so only the binary is needed for it;
# the 6379 instance is checked because the machine's services are expected to be up.
#
#   bash tests/jasmin/setup.sh            (as root on Debian; ~1 min on a fresh machine)
#   JASMIN_VENV=/elsewhere bash tests/jasmin/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV="${JASMIN_VENV:-/var/tmp/switchboard-jasmin-venv}"
REQS=tests/jasmin/requirements.txt
PY="${JASMIN_PYTHON:-python3}"
SLOTS=8
VHOSTS=(switchboard_test)
for i in $(seq 0 $((SLOTS - 1))); do VHOSTS+=("switchboard_test_$i"); done

die() { echo "tests/jasmin/setup.sh: $*" >&2; exit 1; }
say() { echo "== jasmin setup: $*"; }
t0=$(date +%s)

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 1. Debian packages
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v rabbitmq-server >/dev/null && command -v rabbitmqctl >/dev/null || need_apt+=(rabbitmq-server)
command -v "$PY" >/dev/null || need_apt+=(python3)
if command -v "$PY" >/dev/null && ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]}"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${need_apt[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || die "apt-get install ${need_apt[*]} failed"
fi
command -v redis-server >/dev/null || die "redis-server not found after install"
command -v rabbitmqctl >/dev/null || die "rabbitmqctl not found after install"
"$PY" -c 'import sys; assert (3, 8) <= sys.version_info[:2] <= (3, 11), sys.version' 2>/dev/null \
  || die "$PY is $("$PY" --version 2>&1); Jasmin 0.11.0 with these pins needs Python 3.8 .. 3.11 (set JASMIN_PYTHON)"

# 2. The virtualenv
want="$(sha256sum "$REQS" | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version.split()[0])')"
stamp="$VENV/.switchboard-jasmin-ready"
spec="$VENV/share/jasmin/resource/amqp0-9-1.xml"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x "$VENV/bin/jasmind.py" ] \
   || [ ! -s "$spec" ]; then
  say "creating $VENV (jasmin==0.11.0)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || die "$PY -m venv $VENV failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-input -r "$REQS" \
    || die "pip install -r $REQS failed"
  # Jasmin's own AMQP spec, from the source distribution of the same version.
  dl="$(mktemp -d)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-input --no-deps \
    --no-binary :all: -d "$dl" jasmin==0.11.0 || die "pip download jasmin==0.11.0 (sdist) failed"
  mkdir -p "$(dirname "$spec")"
  tar -xzf "$dl"/jasmin-0.11.0.tar.gz -O jasmin-0.11.0/misc/config/resource/amqp0-9-1.xml \
    > "$spec" || die "amqp0-9-1.xml not found in jasmin-0.11.0.tar.gz"
  rm -rf "$dl"
  echo "$want" > "$stamp"
fi
rel="$("$VENV/bin/python" -c 'import jasmin; print(jasmin.get_release())' 2>&1)" \
  || die "jasmin does not import in $VENV: $rel"
[ "$rel" = "0.11.0" ] || die "$VENV has jasmin $rel, want 0.11.0 (delete $VENV and re-run)"
[ -x "$VENV/bin/jasmind.py" ] || die "$VENV/bin/jasmind.py missing"
[ -s "$spec" ] || die "$spec missing"

# 3. Redis and RabbitMQ
if ! port_open 6379; then
  say "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
    || die "redis-server did not start"
  for _ in $(seq 1 50); do port_open 6379 && break; sleep 0.1; done
fi
port_open 6379 || die "Redis does not answer on 127.0.0.1:6379"

if ! port_open 5672 || ! rabbitmqctl -q status >/dev/null 2>&1; then
  if ! port_open 5672; then
    say "starting rabbitmq-server"
    rabbitmq-server -detached || die "rabbitmq-server -detached failed"
  fi
  ok=
  for _ in $(seq 1 120); do
    if port_open 5672 && rabbitmqctl -q status >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  [ -n "$ok" ] || die "RabbitMQ does not answer on 127.0.0.1:5672 after 60 s (see /var/log/rabbitmq/)"
fi

# 4. vhosts with guest permissions
existing="$(rabbitmqctl -q list_vhosts name 2>/dev/null)" || die "rabbitmqctl list_vhosts failed (run as root)"
for vh in "${VHOSTS[@]}"; do
  if ! grep -qx "$vh" <<<"$existing"; then
    rabbitmqctl -q add_vhost "$vh" >/dev/null || die "rabbitmqctl add_vhost $vh failed"
  fi
done
perms="$(rabbitmqctl -q list_user_permissions guest 2>/dev/null)" \
  || die "RabbitMQ has no user guest (Debian's default guest/guest is expected)"
for vh in "${VHOSTS[@]}"; do
  if ! grep -q "^$vh[[:space:]]" <<<"$perms"; then
    rabbitmqctl -q set_permissions -p "$vh" guest ".*" ".*" ".*" >/dev/null \
      || die "rabbitmqctl set_permissions -p $vh guest failed"
  fi
done

say "ready in $(( $(date +%s) - t0 )) s: JASMIN_VENV=$VENV, vhosts ${VHOSTS[0]} and ${VHOSTS[1]}..${VHOSTS[-1]}"
