#!/bin/sh
# Set up InfluxDB 1.x for redox-streamer: runs setup.iql (database "redox", retention
# policy "400d" as default, users "redox" (write) and "grafana" (read)).
#
#   INFLUX_ADMIN_PASSWORD=... REDOX_INFLUX_PASSWORD=... GRAFANA_INFLUX_PASSWORD=... \
#       deploy/influxdb/v1/setup.sh [http://127.0.0.1:8086]
#
# Needs an admin user. On a fresh Debian `influxdb` (auth off), create one first:
#   influx -execute "CREATE USER admin WITH PASSWORD '...' WITH ALL PRIVILEGES"
# then set auth-enabled = true in [http] of /etc/influxdb/influxdb.conf and restart.
# INFLUX_ADMIN_USER defaults to "admin". Needs curl.
set -eu

url=${1:-${INFLUX_URL:-http://127.0.0.1:8086}}
admin=${INFLUX_ADMIN_USER:-admin}
: "${INFLUX_ADMIN_PASSWORD:?set INFLUX_ADMIN_PASSWORD (the admin user's password)}"
: "${REDOX_INFLUX_PASSWORD:?set REDOX_INFLUX_PASSWORD (for the streamer user 'redox')}"
: "${GRAFANA_INFLUX_PASSWORD:?set GRAFANA_INFLUX_PASSWORD (for the read-only user 'grafana')}"
command -v curl >/dev/null 2>&1 || { echo "$0: curl not found: apt install curl" >&2; exit 2; }

here=$(dirname "$0")
# Passwords go inside InfluxQL single quotes and through sed: refuse the few characters
# that would change the statement (e.g. use `openssl rand -hex 16` for a password).
for p in "$REDOX_INFLUX_PASSWORD" "$GRAFANA_INFLUX_PASSWORD"; do
    case $p in *"'"*|*'\'*|*'|'*|*'&'*)
        echo "$0: passwords must not contain ' \\ | or &" >&2; exit 2 ;;
    esac
done

# Drop comments, fill ${NAME} placeholders, send each statement on its own so that an
# error names the statement.
grep -v '^[[:space:]]*--' "$here/setup.iql" | tr '\n' ' ' | tr ';' '\n' | while IFS= read -r stmt; do
    stmt=$(printf '%s' "$stmt" | sed -e 's/^ *//' -e 's/ *$//' \
        -e "s|\${REDOX_INFLUX_PASSWORD}|$REDOX_INFLUX_PASSWORD|g" \
        -e "s|\${GRAFANA_INFLUX_PASSWORD}|$GRAFANA_INFLUX_PASSWORD|g")
    [ -n "$stmt" ] || continue
    answer=$(curl -sS -u "$admin:$INFLUX_ADMIN_PASSWORD" -XPOST "$url/query" \
        --data-urlencode "q=$stmt") || { echo "$0: $url unreachable" >&2; exit 1; }
    case $answer in
        *'"error"'*) echo "$0: failed: ${stmt%%WITH PASSWORD*}: $answer" >&2; exit 1 ;;
    esac
    echo "ok: ${stmt%%WITH PASSWORD*}"
done
echo "InfluxDB at $url ready: database redox (default policy 400d), users redox, grafana"
