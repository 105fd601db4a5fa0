#!/usr/bin/env bash
# The whole test suite, with the real peers it needs: installs Kannel (+ fakesmsc) from
# Debian when missing, makes sure PostgreSQL answers on 127.0.0.1:5432 (starting or
# installing it), sets up a real Jasmin 0.11.0 (tests/jasmin/setup.sh: a venv, Redis,
# RabbitMQ), then runs every test. A missing peer fails the run; nothing is skipped.
#
#   bash tests/run.sh            (as root on Debian, or with the peers already installed)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/sbin/bearerbox ] || need_apt+=(kannel)
[ -x /usr/lib/kannel/test/fakesmsc ] || need_apt+=(kannel-extras)
command -v pg_isready >/dev/null || need_apt+=(postgresql)
command -v swaks >/dev/null || need_apt+=(swaks)
[ -x /usr/sbin/postfix ] || need_apt+=(postfix)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need_apt+=(python3-aiosmtpd)
[ -x /usr/bin/openssl ] || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "tests/run.sh: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  # Postfix without questions and without a system instance (tests run their own).
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL for the conformance suite: postgres://postgres@127.0.0.1:5432/test (trust).
PG_URL="${SWITCHBOARD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
export SWITCHBOARD_TEST_PG_URL="$PG_URL"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "== starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! grep -q "^host all postgres 127.0.0.1/32 trust" "$hba"; then
    # A machine set up by this script: let the tests connect without a password on loopback.
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
if ! psql "$PG_URL" -Atc 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -Atc 'create database test' postgres >/dev/null 2>&1 || true
  psql "$PG_URL" -Atc 'select 1' >/dev/null || { echo "cannot connect to $PG_URL" >&2; exit 1; }
fi

# A real Jasmin 0.11.0 for tests/it/jasmin_e2e.rs: venv outside the repo, Redis, RabbitMQ vhosts.
export JASMIN_VENV="${JASMIN_VENV:-/var/tmp/switchboard-jasmin-venv}"
bash tests/jasmin/setup.sh

# Test databases a crashed earlier run left behind (each test makes its own sb_test_*).
for db in $(psql "$PG_URL" -Atc "select datname from pg_database where datname like 'sb\_test\_%'"); do
  psql "$PG_URL" -qc "drop database if exists $db" >/dev/null || true
done

echo "== tests"
failed=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast --test-threads 4 || failed=1
else
  cargo test --no-fail-fast || failed=1
fi

# The second pass: every HTTP test whose app is on the default SQLite file runs again on a
# fresh PostgreSQL database (tests/it/common: SWITCHBOARD_TEST_ENGINE). Tests that read the
# SQLite file themselves ask for it; the store conformance suite runs both engines already;
# the CLI, crash and log tests run the real binary on SQLite.
echo "== tests again, HTTP apps on PostgreSQL"
# (Tests named for one engine, `sqlite_…` / `postgres_…`, ran on it already.)
pg_pass='kind(test) & not test(/^(store_conformance|fuzz_regressions|cli|crash_recovery|log_privacy)::/) & not test(/::(sqlite|postgres)_/)'
if cargo nextest --version >/dev/null 2>&1; then
  SWITCHBOARD_TEST_ENGINE=postgres cargo nextest run --no-fail-fast --test-threads 4 -E "$pg_pass" || failed=1
else
  SWITCHBOARD_TEST_ENGINE=postgres cargo test --no-fail-fast --test it -- \
    --skip store_conformance:: --skip fuzz_regressions:: --skip cli:: --skip crash_recovery:: --skip log_privacy:: \
    --skip ::sqlite_ --skip ::postgres_ || failed=1
fi
exit "$failed"
