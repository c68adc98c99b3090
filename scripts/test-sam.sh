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

log() { echo "[test-sam] $*" >&2; }

source "$ROOT/scripts/docker-daemon.sh"
trap stop_dockerd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
