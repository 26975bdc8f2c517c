#!/usr/bin/env bash
# Install the Debian/Ubuntu packages ongrid's demo and tests use, when they are missing.
# Usage: deploy/system-deps.sh demo|test|image
#   demo: mosquitto (the broker), socat (serial pty pairs for the simulated RS485 devices)
#   test: the above plus influxdb (1.x, InfluxQL), victoria-metrics (InfluxDB v2 write API),
#         mbpoll (an independent Modbus client), nodejs/npm (Node-RED flow test)
#   image: podman and runc (the container engine make test-image uses) with netavark and
#         aardvark-dns (container names resolve on a podman network) and catatonit (--init), which
#         are only recommended; iptables, which netavark runs for every container on a network but
#         does not declare (without it a build's RUN step fails with "netavark: No such file or
#         directory"); debootstrap (the local base image, deploy/base-image.sh); socat (the serial
#         pty passed into a container)
set -euo pipefail

want=(mosquitto:mosquitto socat:socat)
if [ "${1:-demo}" = "test" ]; then
  want+=(influxd:influxdb victoria-metrics:victoria-metrics mbpoll:mbpoll npm:npm)
fi
if [ "${1:-demo}" = "image" ]; then
  want=(podman:podman runc:runc netavark:netavark aardvark-dns:aardvark-dns catatonit:catatonit
        iptables:iptables debootstrap:debootstrap socat:socat)
fi

missing=()
for pair in "${want[@]}"; do
  binary=${pair%%:*}
  package=${pair#*:}
  if ! command -v "$binary" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$binary" ] && [ ! -x "/usr/bin/$binary" ] \
    && [ ! -x "/usr/lib/podman/$binary" ]; then
    missing+=("$package")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ongrid needs these system packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
  [ "${1:-demo}" = "demo" ] && exit 1
  echo "(tests that need them will be skipped with a reason)" >&2
  exit 0
fi

echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
# Packages whose service would start on install are stopped again: tests start their own instances.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for service in influxdb victoria-metrics; do
  if command -v service >/dev/null 2>&1; then service "$service" stop >/dev/null 2>&1 || true; fi
done
