#!/bin/sh
# Online, portable backup of the ongrid database (InfluxDB 1.8), run inside the influxdb container:
#   docker compose exec influxdb ongrid-backup            -> /backups/ongrid-YYYYmmddTHHMMSSZ on the host's ./backups
# Restore into an empty influxdb (docs/deployment.md, "Backups"):
#   docker compose exec influxdb influxd restore -portable -db ongrid -newdb ongrid_restored /backups/<folder>
set -eu
BACKUP_ROOT=${BACKUP_ROOT:-/backups}
KEEP=${KEEP:-14}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
target="$BACKUP_ROOT/ongrid-$stamp"
influxd backup -portable -database "${INFLUXDB_DB:-ongrid}" -host 127.0.0.1:8088 "$target"
echo "backup written to $target"
# Keep the newest $KEEP backups.
ls -1d "$BACKUP_ROOT"/ongrid-* 2>/dev/null | sort | head -n "-$KEEP" | while read -r old; do
  rm -rf "$old"
  echo "removed old backup $old"
done
