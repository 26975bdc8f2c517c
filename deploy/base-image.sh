#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim-bookworm on a machine that cannot reach a container
# registry: Debian bookworm's own Python 3.11 in a minimal debootstrap root, imported as an image.
#
# Usage: deploy/base-image.sh [--force]     (root; needs debootstrap and podman or docker)
#   Prints the image name, localhost/ongrid-base:python3.11-bookworm (BASE_IMAGE_LOCAL overrides).
#   An image of that name already present is reused unless --force.
#   Then: make image BASE_IMAGE=localhost/ongrid-base:python3.11-bookworm
#   (make image does this by itself when the default base cannot be pulled).
#
# What differs from the official image, and why the Dockerfile does not care: Python is Debian's
# /usr/bin/python3 (3.11.2) rather than /usr/local/bin/python; the Dockerfile calls python3 only
# through the venv it makes. Apt lists, docs, man pages and locales are dropped, as in the official one.
set -euo pipefail

NAME=${BASE_IMAGE_LOCAL:-localhost/ongrid-base:python3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
[ "${1:-}" = "--force" ] && force=1

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/engine.sh
. "$here/engine.sh"
container_engine || { echo "base-image: $ENGINE_WHY" >&2; exit 1; }

if [ "$force" = 0 ] && "${ENGINE_CMD[@]}" image inspect "$NAME" >/dev/null 2>&1; then
  echo "$NAME"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "base-image: needs debootstrap (apt-get install -y debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d /var/tmp/ongrid-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
# minbase: essential packages and apt only (passwd, for useradd, is among them); python3.11-venv
# brings ensurepip, which `python3 -m venv` needs on Debian, and its dependency python3-distutils,
# which debootstrap's resolver does not pick by itself; ca-certificates for pip over HTTPS.
debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
  bookworm "$root" "$MIRROR" >&2
# The official image answers to `python` and `python3` on PATH; so does this one.
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
ln -sf /usr/bin/python3 "$root/usr/local/bin/python3"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log \
  "$root"/tmp/* "$root"/root/.cache
tar --numeric-owner -C "$root" -c . | "${ENGINE_CMD[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$NAME" >&2
echo "$NAME"
