#!/bin/sh
# Entry point of the ongrid image: read the MQTT password the broker bootstrap generated (a file
# mounted from the mqtt-auth volume, docs/deployment.md) into the environment pydantic-settings
# reads, then run the command. An explicit ONGRID_MQTT__PASSWORD always wins.
set -eu

password_file=${ONGRID_MQTT_PASSWORD_FILE:-/run/secrets/mqtt/password}
if [ -z "${ONGRID_MQTT__PASSWORD:-}" ] && [ -n "${ONGRID_MQTT__USERNAME:-}" ]; then
  if [ -r "$password_file" ]; then
    ONGRID_MQTT__PASSWORD=$(cat "$password_file")
    export ONGRID_MQTT__PASSWORD
  else
    echo "ongrid: mqtt user ${ONGRID_MQTT__USERNAME} but no readable password file at $password_file" >&2
    echo "ongrid: run the broker bootstrap first (docker compose up mqtt-init) or set ONGRID_MQTT__PASSWORD" >&2
    exit 78
  fi
fi
exec "$@"
