#!/bin/sh
# Create the broker's users with random passwords, once, and (re)write mosquitto's password file.
#
# Runs as the one-shot "mqtt-init" container before mosquitto starts (docker-compose.yml), or by hand:
#   AUTH_DIR=/some/dir deploy/mosquitto/bootstrap.sh
# Layout written under AUTH_DIR:
#   passwd                    mosquitto password file (hashed), read by the broker
#   secrets/<user>/password   the clear password, one folder per user, so a container mounts only its own
# Existing passwords are kept: re-running is safe and only adds users that are new. To rotate one,
# delete its secrets/<user> folder and run again (then restart that container).
set -eu

AUTH_DIR=${AUTH_DIR:-/mosquitto/auth}
USERS=${USERS:-"inverter-bridge bms-bridge meter-bridge dispatcher recorder simulator nodered homeassistant healthcheck"}
# Owners: the ongrid image runs as 10001, Node-RED's as 1000, mosquitto as 1883 (0 = leave as is).
SERVICE_UID=${SERVICE_UID:-10001}
NODERED_UID=${NODERED_UID:-1000}
BROKER_UID=${BROKER_UID:-1883}
MOSQUITTO_PASSWD=${MOSQUITTO_PASSWD:-mosquitto_passwd}

new_password() {
  # 32 characters from the kernel's CSPRNG, alphanumeric so it survives env files and YAML.
  tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32
}

owner_of() {
  case "$1" in
    nodered) echo "$NODERED_UID" ;;
    healthcheck) echo "$BROKER_UID" ;;
    *) echo "$SERVICE_UID" ;;
  esac
}

umask 077
mkdir -p "$AUTH_DIR/secrets"
# Traverse-only for others: the broker (another uid) must reach passwd, nobody may list the users.
chmod 0711 "$AUTH_DIR" "$AUTH_DIR/secrets"
created=""
for user in $USERS; do
  dir="$AUTH_DIR/secrets/$user"
  if [ ! -s "$dir/password" ]; then
    mkdir -p "$dir"
    new_password >"$dir/password.tmp"
    mv "$dir/password.tmp" "$dir/password"
    created="$created $user"
  fi
  chmod 0500 "$dir"
  chmod 0400 "$dir/password"
  uid=$(owner_of "$user")
  if [ "$uid" != 0 ] && [ "$(id -u)" = 0 ]; then
    chown -R "$uid" "$dir"
  fi
done

# Rebuilt from the secrets every time, so a user removed from USERS loses access.
tmp="$AUTH_DIR/passwd.tmp"
: >"$tmp"
for user in $USERS; do
  "$MOSQUITTO_PASSWD" -b "$tmp" "$user" "$(cat "$AUTH_DIR/secrets/$user/password")"
done
chmod 0600 "$tmp"
if [ "$BROKER_UID" != 0 ] && [ "$(id -u)" = 0 ]; then
  chown "$BROKER_UID" "$tmp"
fi
mv "$tmp" "$AUTH_DIR/passwd"

if [ -n "$created" ]; then
  echo "mqtt-init: created users:$created (passwords in $AUTH_DIR/secrets/<user>/password)"
else
  echo "mqtt-init: all users exist; password file rewritten"
fi
