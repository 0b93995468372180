#!/bin/sh
# Entrypoint of the cml-cloud-manager image: one image, every role.
#
#   (no arguments)              the role in WORKER_MODE: api (the default), worker or all
#   api | worker | all | migrate | token | up | sandbox [ARGS...]
#                               that sub-command of cml-cloud-manager
#   anything else               run it as a command, e.g. `sh` to look around
#
# A worker gets `--health-port $WORKER_HEALTH_PORT` (/health and /metrics for probes) unless the arguments
# already name a health port or WORKER_HEALTH_PORT is empty. Every path ends in `exec`: cml-cloud-manager
# replaces this shell as PID 1, so the SIGTERM of `docker stop`, the kubelet or systemd reaches it directly and
# it shuts down gracefully within SHUTDOWN_GRACE_SECONDS.
set -eu

if [ "$#" -eq 0 ]; then
  mode="${WORKER_MODE:-api}"
  case "$mode" in
    api | worker | all) set -- "$mode" ;;
    *)
      echo "cml-entrypoint: WORKER_MODE must be api, worker or all (got '$mode')" >&2
      exit 64
      ;;
  esac
fi

case "$1" in
  worker)
    shift
    health_port_given=no
    for arg in "$@"; do
      case "$arg" in
        --health-port | --health-port=*) health_port_given=yes ;;
      esac
    done
    if [ "$health_port_given" = no ] && [ -n "${WORKER_HEALTH_PORT:-}" ]; then
      set -- --health-port "$WORKER_HEALTH_PORT" "$@"
    fi
    exec cml-cloud-manager worker "$@"
    ;;
  api | all | migrate | token | up | sandbox | -h | --help)
    exec cml-cloud-manager "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
