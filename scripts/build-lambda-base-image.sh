#!/usr/bin/env bash
# Builds a Lambda-compatible python3.13 base image locally, without any container registry.
#
#   scripts/build-lambda-base-image.sh            # prints the image name; no-op when it is up to date
#   FORCE=1 scripts/build-lambda-base-image.sh    # rebuild the image (the cached root file system is kept)
#   FORCE=2 scripts/build-lambda-base-image.sh    # also redo debootstrap
#
# Why: no container registry is reachable here, so the AWS base images (public.ecr.aws/lambda/python) cannot
# be pulled. The image is made from Debian trixie (Python 3.13, the runtime this project deploys) by
# debootstrap, plus the AWS runtime interface client (`awslambdaric`, pinned, from the package index).
#
# The image works in both ways SAM CLI uses a base image:
# - zip functions: `sam local invoke --invoke-image <image> --skip-pull-image`. SAM adds its own runtime
#   interface emulator (RIE) at /var/rapid and runs it as the entry point; the RIE starts
#   /var/runtime/bootstrap (its default location), which runs `python3 -m awslambdaric <handler>` with
#   the code in /var/task and the layers in /opt/python, as in AWS.
# - image functions: `FROM ${BASE_IMAGE}` in a Dockerfile, `COPY app.py ${LAMBDA_TASK_ROOT}`,
#   `CMD ["app.handler"]`; ENTRYPOINT is /lambda-entrypoint.sh, which runs the bootstrap with the handler
#   (under the RIE that `sam local` prepends, or directly when AWS_LAMBDA_RUNTIME_API is set).
#   pip is in the image (`pip install --target ${LAMBDA_TASK_ROOT} ...` works as in AWS's images).
#
# Reproducible: the Debian suite, package list and Python packages are pinned here; the debootstrap result
# is cached as a tarball under .cache/lambda-base/ (git-ignored) and reused; the image carries a label with
# the hash of this recipe and is rebuilt only when the recipe changes (or with FORCE=1).
# Needs: root, debootstrap (installed with apt when missing), a running Docker daemon.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGE="${LAMBDA_BASE_IMAGE:-medimage/lambda-python:3.13}"
SUITE="trixie"                      # Debian 13: python3 is 3.13
PYTHON_MINOR="3.13"
DEBIAN_PACKAGES="python3,python3-pip,ca-certificates"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What AWS's python runtime provides besides the standard library: the runtime interface client and the AWS
# SDK, pinned with their dependencies (installed for cp313 manylinux x86_64 into /var/runtime). boto3 is the
# version constraints.txt pins for the project.
RUNTIME_PACKAGES=(awslambdaric==4.2.2 simplejson==4.3.0 snapshot-restore-py==1.0.0
  boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0 python-dateutil==2.9.0.post0
  six==1.17.0 urllib3==2.8.0)
# Certificate authorities this machine adds to the system store (an egress proxy may re-sign TLS): copied into
# the image so that `pip install` in a Dockerfile built FROM it reaches the package index as the host does.
# Local images only; never push an image built this way.
HOST_EXTRA_CAS="${HOST_EXTRA_CAS:-/usr/local/share/ca-certificates}"
CACHE="${LAMBDA_BASE_CACHE:-$ROOT/.cache/lambda-base}"
HOST_PYTHON="${HOST_PYTHON:-python3}"
FORCE="${FORCE:-0}"

log() { echo "[lambda-base] $*" >&2; }

# The recipe: everything that changes the image. Its hash labels the image.
host_cas() { find "$HOST_EXTRA_CAS" -maxdepth 1 -name '*.crt' -type f 2>/dev/null | sort; }
RECIPE_HASH="$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $DEBIAN_PACKAGES ${RUNTIME_PACKAGES[*]}";
                  host_cas | xargs -r cat; } \
  | sha256sum | cut -c1-16)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-$(echo "$DEBIAN_PACKAGES" | sha256sum | cut -c1-12).tar"

command -v docker >/dev/null || { log "docker CLI not found"; exit 1; }
docker info >/dev/null 2>&1 || { log "no Docker daemon reachable (make test-sam starts one)"; exit 1; }

if [[ "$FORCE" == 0 ]]; then
  current="$(docker image inspect "$IMAGE" --format '{{ index .Config.Labels "org.medimage.recipe" }}' 2>/dev/null || true)"
  if [[ "$current" == "$RECIPE_HASH" ]]; then
    log "$IMAGE is up to date (recipe $RECIPE_HASH)"
    echo "$IMAGE"
    exit 0
  fi
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # one build at a time (several sessions may share this machine)

WORK="$(mktemp -d "$CACHE/work.XXXXXX")"
cleanup() { rm -rf --one-file-system "$WORK"; }
trap cleanup EXIT

# ---------------------------------------------------------------- 1. Debian root file system (cached)
if [[ ! -s "$ROOTFS_TAR" || "$FORCE" == 2 ]]; then
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  fi
  log "debootstrap $SUITE ($DEBIAN_PACKAGES) from $MIRROR"
  start=$SECONDS
  for attempt in 1 2 3; do
    rm -rf --one-file-system "$WORK/rootfs"
    if nice -n 10 debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" "$SUITE" "$WORK/rootfs" "$MIRROR" \
         >"$WORK/debootstrap.log" 2>&1; then
      break
    fi
    log "debootstrap attempt $attempt failed: $(tail -n 3 "$WORK/debootstrap.log" | tr '\n' ' ')"
    [[ $attempt == 3 ]] && exit 1
    sleep 5
  done
  # Trim what a function never needs; keep apt/dpkg working.
  rm -rf "$WORK/rootfs"/var/lib/apt/lists/* "$WORK/rootfs"/var/cache/apt/*.bin \
         "$WORK/rootfs"/var/cache/apt/archives/*.deb "$WORK/rootfs"/usr/share/doc/* \
         "$WORK/rootfs"/usr/share/man/* "$WORK/rootfs"/usr/share/info/* "$WORK/rootfs"/var/log/*.log \
         "$WORK/rootfs"/debootstrap
  tar --numeric-owner -C "$WORK/rootfs" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf --one-file-system "$WORK/rootfs"
  log "cached $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1), $((SECONDS - start)) s)"
else
  log "using cached $ROOTFS_TAR"
fi

# ---------------------------------------------------------------- 2. Lambda runtime on top
mkdir -p "$WORK/rootfs"
tar --numeric-owner -C "$WORK/rootfs" -xf "$ROOTFS_TAR"
R="$WORK/rootfs"

version="$("$R/usr/bin/python3" --version 2>/dev/null || chroot "$R" /usr/bin/python3 --version)"
[[ "$version" == "Python $PYTHON_MINOR."* ]] || { log "expected Python $PYTHON_MINOR in $SUITE, got: $version"; exit 1; }
log "$version"

log "installing ${RUNTIME_PACKAGES[*]} into /var/runtime"
mkdir -p "$R/var/runtime" "$R/var/task" "$R/opt"
PIP_NO_WARN_SCRIPT_LOCATION=1 "$HOST_PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile \
  --root-user-action=ignore \
  --platform manylinux2014_x86_64 --python-version "$PYTHON_MINOR" --implementation cp --only-binary=:all: \
  --target "$R/var/runtime" "${RUNTIME_PACKAGES[@]}" >"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; exit 1; }

mapfile -t cas < <(host_cas)
if (( ${#cas[@]} )); then
  log "adding ${#cas[@]} certificate authorities of this machine (${HOST_EXTRA_CAS})"
  mkdir -p "$R/usr/local/share/ca-certificates"
  for ca in "${cas[@]}"; do
    cp "$ca" "$R/usr/local/share/ca-certificates/"
    { echo; cat "$ca"; } >>"$R/etc/ssl/certs/ca-certificates.crt"
  done
fi

# This image is a function runtime, like AWS's: pip installs into it (or into --target) are intended.
rm -f "$R/usr/lib/python$PYTHON_MINOR/EXTERNALLY-MANAGED"
# AWS's images answer to `python` as well as `python3` (Dockerfiles run `python -m pip ...`).
ln -sf /usr/bin/python3 "$R/usr/local/bin/python"

cat >"$R/var/runtime/bootstrap" <<'EOF'
#!/bin/sh
# Lambda runtime bootstrap: started by Lambda or by the runtime interface emulator with AWS_LAMBDA_RUNTIME_API
# set. The handler comes as the first argument, or from _HANDLER / AWS_LAMBDA_FUNCTION_HANDLER.
handler="${1:-${_HANDLER:-${AWS_LAMBDA_FUNCTION_HANDLER:-}}}"
if [ -z "$handler" ]; then
  echo "bootstrap: no handler (argument, _HANDLER or AWS_LAMBDA_FUNCTION_HANDLER)" >&2
  exit 142
fi
export _HANDLER="$handler"
export LAMBDA_TASK_ROOT="${LAMBDA_TASK_ROOT:-/var/task}"
# The search path of AWS's python runtime: function code, layers, then the runtime client.
export PYTHONPATH="${LAMBDA_TASK_ROOT}:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
cd "$LAMBDA_TASK_ROOT" || exit 142
exec /usr/bin/python3 -m awslambdaric "$handler"
EOF

cat >"$R/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
# ENTRYPOINT of image functions, as in AWS's base images: the handler is the argument (the image's CMD).
if [ $# -lt 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" >&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  # Outside Lambda: run under an emulator if the image has one (`sam local` brings its own instead).
  if [ -x /usr/local/bin/aws-lambda-rie ]; then
    exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap "$@"
  fi
  echo "AWS_LAMBDA_RUNTIME_API is not set and no /usr/local/bin/aws-lambda-rie in the image" >&2
  exit 142
fi
exec /var/runtime/bootstrap "$@"
EOF
chmod 0755 "$R/var/runtime/bootstrap" "$R/lambda-entrypoint.sh"

# ---------------------------------------------------------------- 3. docker import
log "importing $IMAGE"
tar --numeric-owner -C "$R" -c . | nice -n 10 docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:/etc/localtime' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/runtime/lib:/var/task/lib:/opt/lib' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'ENV AWS_EXECUTION_ENV=AWS_Lambda_python3.13' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
  --change "LABEL org.medimage.recipe=$RECIPE_HASH" \
  --change "LABEL org.medimage.base=debian-$SUITE-python$PYTHON_MINOR" \
  - "$IMAGE" >/dev/null
log "built $IMAGE ($(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%d MB", $1/1e6}'))"
echo "$IMAGE"
