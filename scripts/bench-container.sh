#!/usr/bin/env bash
# make bench-container: the inference image under the Lambda Runtime Interface Emulator (benchmarks/container_bench.py).
#
#   scripts/bench-container.sh --model DIR --images DIR [--cpus 0.29,0.58,1.0] [--invocations 50]
#
# Starts Docker when needed (scripts/docker-daemon.sh), builds the local Lambda base image (cached), and uses the
# emulator SAM CLI ships in .venv-sam. The JSON goes to stdout (and build/bench/container.json with make).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="${BENCH_LOG_DIR:-/tmp/medimage-bench-container}"
mkdir -p "$LOG_DIR"
PYTHON="${PYTHON_VENV:-$ROOT/.venv}/bin/python"

log() { echo "[bench-container] $*" >&2; }

source "$ROOT/scripts/docker-daemon.sh"
trap stop_dockerd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RIE="$(find "$ROOT/.venv-sam" -path '*samcli/local/rapid/aws-lambda-rie-x86_64' -print -quit 2>/dev/null || true)"
[[ -n "$RIE" ]] || { log "no aws-lambda-rie in .venv-sam (make sam-install)"; exit 1; }
ensure_docker
BASE_IMAGE="$(scripts/build-lambda-base-image.sh)"
log "base image $BASE_IMAGE, emulator $RIE"
"$PYTHON" benchmarks/container_bench.py --base-image "$BASE_IMAGE" --rie "$RIE" "$@"
