# Sourced by deploy/*.sh: which container engine this machine can use.
# container_engine sets ENGINE ("podman" or "docker") and ENGINE_CMD, or sets ENGINE_WHY and
# returns 1 when neither works.
#
# Podman is tried first and always with the project's containers.conf (deploy/podman/containers.conf):
# runc and cgroupfs, because the crun runtime and the systemd cgroup manager fail on the small VMs
# this project is built on, and bounded ulimits, because the host's defaults are refused there.
# A docker client with no daemon behind it does not count. ONGRID_ENGINE=docker|podman chooses.

ENGINE=""
ENGINE_CMD=()
ENGINE_WHY=""

container_engine() {
  local conf
  conf="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/podman/containers.conf"
  if [ "${ONGRID_ENGINE:-podman}" = podman ] && command -v podman >/dev/null 2>&1; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$conf}"
    if podman info >/dev/null 2>&1; then
      ENGINE=podman
      ENGINE_CMD=(podman)
      return 0
    fi
    ENGINE_WHY="podman is installed but 'podman info' fails: $(podman info 2>&1 | tail -1)"
  fi
  if [ "${ONGRID_ENGINE:-docker}" = docker ] && command -v docker >/dev/null 2>&1; then
    if docker info >/dev/null 2>&1; then
      ENGINE=docker
      ENGINE_CMD=(docker)
      return 0
    fi
    ENGINE_WHY="${ENGINE_WHY:+$ENGINE_WHY; }docker is installed but has no daemon ('docker info' fails)"
  fi
  ENGINE_WHY=${ENGINE_WHY:-"neither podman nor docker is installed (apt-get install -y podman runc)"}
  return 1
}
