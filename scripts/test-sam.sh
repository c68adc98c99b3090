#!/usr/bin/env bash
# make test-sam: every function under `sam local invoke`, against moto's server (tests/sam).
#
# 1. Docker: uses the running daemon, or starts dockerd (installing Debian's docker.io when missing) and
#    stops it again, by PID, when this script ends (also on failure or interrupt).
# 2. The Lambda python3.13 base image (scripts/build-lambda-base-image.sh; cached).
# 3. pytest tests/sam: sam build, moto server, sam local invoke of each function (see tests/sam/samlocal.py).
# Needs root (dockerd, debootstrap). Logs: $TEST_SAM_LOG_DIR (default /tmp/medimage-test-sam) and
# .aws-sam/test-sam/*.log. Extra arguments go to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="${TEST_SAM_LOG_DIR:-/tmp/medimage-test-sam}"
mkdir -p "$LOG_DIR"
PYTHON="${PYTHON_VENV:-$ROOT/.venv}/bin/python"
STARTED_DOCKERD=""

log() { echo "[test-sam] $*" >&2; }

stop_dockerd() {
  if [[ -n "$STARTED_DOCKERD" ]] && kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
    log "stopping the dockerd this run started (pid $STARTED_DOCKERD)"
    kill -TERM "$STARTED_DOCKERD" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    kill -0 "$STARTED_DOCKERD" 2>/dev/null && kill -KILL "$STARTED_DOCKERD" 2>/dev/null || true
  fi
  STARTED_DOCKERD=""
}
trap stop_dockerd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_docker() {
  for _ in $(seq 1 "$1"); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

ensure_docker() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    log "using the running Docker daemon"
    return
  fi
  if pgrep -x dockerd >/dev/null; then
    log "a dockerd is starting; waiting for it"
    wait_for_docker 60 && return
    log "the running dockerd does not answer"; exit 1
  fi
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    log "installing docker.io (Debian)"
    apt-get update -q >"$LOG_DIR/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >>"$LOG_DIR/apt.log" 2>&1
  fi
  log "starting dockerd (log: $LOG_DIR/dockerd.log)"
  dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  if ! wait_for_docker 60; then
    log "dockerd did not come up:"; tail -n 20 "$LOG_DIR/dockerd.log" >&2; exit 1
  fi
}

start=$SECONDS
ensure_docker
BASE_IMAGE="$(scripts/build-lambda-base-image.sh)"
log "base image $BASE_IMAGE ready after $((SECONDS - start)) s"

export MEDIMAGE_TEST_SAM=1 MEDIMAGE_LAMBDA_BASE_IMAGE="$BASE_IMAGE" SAM_CLI_TELEMETRY=0
set +e
"$PYTHON" -m pytest tests/sam -v -s "$@"
rc=$?
set -e
log "finished in $((SECONDS - start)) s (pytest exit $rc)"
exit $rc
