#!/usr/bin/env bash
# Build the ongrid image from deploy/Dockerfile with podman or docker, whichever works here
# (`make image` runs this). Environment:
#   IMAGE       the tag to build (default ongrid:latest, the name docker-compose.yml runs)
#   BASE_IMAGE  the Dockerfile's base (default python:3.11-slim-bookworm). When the default cannot
#               be had (no registry) the local stand-in from deploy/base-image.sh is made and used.
#   ONGRID_ENGINE=podman|docker to choose when both are present.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-ongrid:latest}
DEFAULT_BASE=python:3.11-slim-bookworm
BASE_IMAGE=${BASE_IMAGE:-$DEFAULT_BASE}

# shellcheck source=deploy/engine.sh
. deploy/engine.sh
container_engine || { echo "make image: no container engine: $ENGINE_WHY" >&2; exit 1; }

have() { "${ENGINE_CMD[@]}" image inspect "$1" >/dev/null 2>&1; }

if ! have "$BASE_IMAGE"; then
  echo "make image: pulling $BASE_IMAGE"
  # A machine without a registry fails fast here (DNS) rather than after a long timeout.
  if ! timeout 120 "${ENGINE_CMD[@]}" pull "$BASE_IMAGE" >/dev/null 2>&1; then
    if [ "$BASE_IMAGE" != "$DEFAULT_BASE" ]; then
      echo "make image: cannot pull the base image $BASE_IMAGE" >&2
      exit 1
    fi
    echo "make image: no registry reachable for $BASE_IMAGE: making the local stand-in (deploy/base-image.sh)"
    BASE_IMAGE=$(deploy/base-image.sh)
  fi
fi

echo "make image: $ENGINE build -t $IMAGE (base $BASE_IMAGE)"
previous=$("${ENGINE_CMD[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
start=$(date +%s)
# The host's CA bundle, for a network whose HTTPS to PyPI goes through an inspecting proxy: a build
# secret, so it is used by pip and never stored in a layer.
secret=()
ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
[ -s "$ca" ] && secret=(--secret "id=pip_ca,src=$ca")
# Podman writes OCI images by default, which have no HEALTHCHECK: ask for the Docker format.
format=()
[ "$ENGINE" = podman ] && format=(--format docker)
"${ENGINE_CMD[@]}" build "${format[@]}" "${secret[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -f deploy/Dockerfile -t "$IMAGE" .
end=$(date +%s)
size=$("${ENGINE_CMD[@]}" image inspect --format '{{.Size}}' "$IMAGE")
# The image this build replaced (half a gigabyte each) goes, unless a container still uses it; the
# build stage's layers stay, they are the cache of the next build.
current=$("${ENGINE_CMD[@]}" image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  "${ENGINE_CMD[@]}" image rm "$previous" >/dev/null 2>&1 || true
fi
echo "make image: built $IMAGE in $((end - start)) s, $((size / 1000000)) MB"
