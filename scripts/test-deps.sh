#!/usr/bin/env bash
# What the test suite needs outside Python, checked before a single test runs (`make deps`, run by `make test`):
#   Chromium (UI tests), PostgreSQL and Redis (the second backend, running on 127.0.0.1), promtool (Prometheus
#   config checks), systemd-analyze (unit checks) and nginx (the shipped proxy config, run in front of the API).
# Missing packages are installed with apt when this runs as root on Debian/Ubuntu; otherwise it stops at once,
# naming each missing piece and the command that installs it. PostgreSQL and Redis are started when they are down.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_HOST=127.0.0.1 REDIS_PORT=6379
PG_ADMIN_DSN=${TEST_PG_ADMIN_DSN:-postgresql://postgres@$PG_HOST:$PG_PORT/postgres}  # as tests/conftest.py
say() { printf 'deps: %s\n' "$*" >&2; }

# command -> the Debian package that brings it
declare -A PACKAGE=(
  [chromium]=chromium
  [pg_ctlcluster]=postgresql
  [pg_isready]=postgresql-client
  [psql]=postgresql-client
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [promtool]=prometheus
  [systemd-analyze]=systemd
  [nginx]=nginx
)
# nginx lives in /usr/sbin, which a user's PATH often leaves out; the tests look there too.
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
missing=()
for cmd in "${!PACKAGE[@]}"; do
  have "$cmd" || missing+=("${PACKAGE[$cmd]}")
done
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u | sed '/^$/d')

installed_postgres=false
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} with apt-get"
    [[ " ${missing[*]} " == *" postgresql "* ]] && installed_postgres=true
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing system packages: ${missing[*]}"
    for pkg in "${missing[@]}"; do
      case "$pkg" in
        chromium) say "  chromium: the UI tests drive it (or point CHROMIUM_PATH at a Chromium/Chrome binary)" ;;
        postgresql | postgresql-client) say "  $pkg: the PostgreSQL backend of the suite" ;;
        redis-server | redis-tools) say "  $pkg: Redis, which the PostgreSQL run uses" ;;
        prometheus) say "  prometheus: its promtool checks the shipped Prometheus config and rules" ;;
        systemd) say "  systemd: its systemd-analyze checks the shipped units" ;;
        nginx) say "  nginx: the shipped deploy/nginx/nginx.conf runs in front of the API in the proxy tests" ;;
      esac
    done
    if command -v apt-get >/dev/null 2>&1; then
      say "install them with: sudo apt-get install -y ${missing[*]}"
    else
      say "this is not a Debian-based system: install the equivalents with your package manager"
    fi
    exit 1
  fi
fi

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; }

if ! pg_up; then
  cluster_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$cluster_version" ]; then
    say "PostgreSQL is installed but has no cluster: create one with: sudo pg_createcluster --start <version> main"
    exit 1
  fi
  say "starting PostgreSQL $cluster_version"
  pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start ||
    { say "could not start PostgreSQL: run as root, or start it yourself (pg_ctlcluster $cluster_version main start)"; exit 1; }
fi
if ! redis_up; then
  say "starting Redis on $REDIS_HOST:$REDIS_PORT"
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
fi
for _ in $(seq 1 60); do
  pg_up && redis_up && break
  sleep 0.5
done
pg_up || { say "PostgreSQL does not answer on $PG_HOST:$PG_PORT"; exit 1; }
redis_up || { say "Redis does not answer on $REDIS_HOST:$REDIS_PORT"; exit 1; }

# The tests connect as `postgres` over TCP without a password. A cluster this script just installed asks for one:
# let loopback connections in (a test machine's fresh cluster, never an existing one).
if ! psql "$PG_ADMIN_DSN" -Atqc 'select 1' >/dev/null 2>&1; then
  if $installed_postgres; then
    hba=$(su postgres -c "psql -Atqc 'show hba_file'")
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    su postgres -c "psql -Atqc 'select pg_reload_conf()'" >/dev/null
  fi
  psql "$PG_ADMIN_DSN" -Atqc 'select 1' >/dev/null || {
    say "PostgreSQL refuses user postgres on $PG_HOST:$PG_PORT without a password: the tests need trust auth there"
    say "  (or set TEST_PG_ADMIN_DSN and TEST_PG_URL to a server and user they may create databases with)"
    exit 1
  }
fi
say "ok: chromium, promtool, systemd-analyze, nginx present; PostgreSQL and Redis answer on 127.0.0.1"
