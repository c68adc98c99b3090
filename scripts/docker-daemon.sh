#!/usr/bin/env bash
# Sourced by the scripts that need Docker (test-sam.sh, bench-container.sh): `ensure_docker` uses the running
# daemon, or installs Debian's docker.io when missing and starts dockerd, which `stop_dockerd` (set as an EXIT
# trap by the caller) stops again by PID. Needs LOG_DIR and a `log` function. Root is needed to start dockerd.
STARTED_DOCKERD=""

stop_dockerd() {
  if [[ -n "$STARTED_DOCKERD" ]] && kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
    log "stopping the dockerd this run started (pid $STARTED_DOCKERD)"
    kill -TERM "$STARTED_DOCKERD" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
    kill -0 "$STARTED_DOCKERD" 2>/dev/null && kill -KILL "$STARTED_DOCKERD" 2>/dev/null || true
  fi
  STARTED_DOCKERD=""
}

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
