#!/usr/bin/env bash
# Install or upgrade CML Cloud Manager as two systemd services (cml-api, cml-worker) on this host.
#
#   sudo deploy/systemd/install.sh [PACKAGE]
#
# PACKAGE is what pip installs: a wheel, a source directory or a requirement (default: this repository).
# First run: creates the `cml` user, the venv under $PREFIX, the data directory and /etc/cml-cloud-manager/env
# (mode 0600, from env.example), installs the units, then stops and asks you to fill in the env file.
# Every later run (also an upgrade): upgrades the package, runs `cml-cloud-manager migrate` as the service user
# with the services' environment, then enables and restarts both units.
#
# Environment: PREFIX (/opt/cml-cloud-manager), CONF_DIR (/etc/cml-cloud-manager), DATA_DIR
# (/var/lib/cml-cloud-manager), UNIT_DIR (/etc/systemd/system), PYTHON (python3, 3.11 or newer),
# SERVICE_USER (cml), DRY_RUN=1 prints the commands that change the system instead of running them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGE="${1:-$(cd "$HERE/../.." && pwd)}"
PREFIX="${PREFIX:-/opt/cml-cloud-manager}"
CONF_DIR="${CONF_DIR:-/etc/cml-cloud-manager}"
DATA_DIR="${DATA_DIR:-/var/lib/cml-cloud-manager}"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
PYTHON="${PYTHON:-python3}"
SERVICE_USER="${SERVICE_USER:-cml}"
DRY_RUN="${DRY_RUN:-}"
ENV_FILE="$CONF_DIR/env"
VENV="$PREFIX/venv"
UNITS=(cml-api.service cml-worker.service cml-api@.service cml-worker@.service)

run() {
  if [ -n "$DRY_RUN" ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

if [ -z "$DRY_RUN" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo), or with DRY_RUN=1 to see what it would do"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is older than Python 3.11; set PYTHON=/path/to/python3.11"
for unit in "${UNITS[@]}"; do
  [ -f "$HERE/$unit" ] || die "missing $HERE/$unit"
done

# 1. service user and directories
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
    "$SERVICE_USER"
fi
run install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA_DIR"
run install -d -o root -g root -m 0755 "$CONF_DIR"

# 2. the application in its own virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  run "$PYTHON" -m venv "$VENV"
fi
run "$VENV/bin/pip" install --quiet --upgrade pip
run "$VENV/bin/pip" install --quiet --upgrade "$PACKAGE"

# 3. settings: created once from the template, never overwritten
needs_edit=no
if [ ! -e "$ENV_FILE" ]; then
  run install -o root -g root -m 0600 "$HERE/env.example" "$ENV_FILE"
  needs_edit=yes
elif grep -q 'CHANGE-ME' "$ENV_FILE"; then
  needs_edit=yes
fi

# 4. units, with the paths and user above
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
for unit in "${UNITS[@]}"; do
  sed -e "s|/opt/cml-cloud-manager/venv|$VENV|g" \
    -e "s|/etc/cml-cloud-manager/env|$ENV_FILE|g" \
    -e "s|/var/lib/cml-cloud-manager|$DATA_DIR|g" \
    -e "s|^User=cml\$|User=$SERVICE_USER|" \
    -e "s|^Group=cml\$|Group=$SERVICE_USER|" \
    "$HERE/$unit" >"$rendered/$unit"
  run install -o root -g root -m 0644 "$rendered/$unit" "$UNIT_DIR/$unit"
done
run systemctl daemon-reload

if [ "$needs_edit" = yes ]; then
  echo "Fill in $ENV_FILE (every CHANGE-ME), then run this script again to migrate and start the services."
  exit 0
fi

# 5. database migrations, as the service user with exactly the services' environment
run systemd-run --quiet --wait --pipe --collect \
  --uid="$SERVICE_USER" --gid="$SERVICE_USER" \
  --property=EnvironmentFile="$ENV_FILE" --property=WorkingDirectory="$DATA_DIR" \
  "$VENV/bin/cml-cloud-manager" migrate

# 6. start (or restart onto the new version)
run systemctl enable cml-api.service cml-worker.service
run systemctl restart cml-api.service cml-worker.service
echo "cml-api and cml-worker are running: journalctl -u cml-api -u cml-worker -f"
