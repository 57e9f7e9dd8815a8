#!/bin/sh
# Set up InfluxDB 3 (Core or Enterprise) for redox-streamer with the `influxdb3` CLI.
#
#   INFLUX_TOKEN=<admin token> deploy/influxdb/v3/setup.sh
# (a fresh server prints its first admin token with `influxdb3 create token --admin`).
#
# InfluxDB 3 serves InfluxQL itself: the database "redox" is what Grafana's InfluxQL
# datasource and the v1 /query API name, so no DBRP mapping is needed. Writes: the v1
# /write?db=redox and the v2 /api/v2/write?bucket=redox APIs are both accepted, with
# "Authorization: Token <token>" (streamer config: api = "v2", bucket = "redox", any org).
# Settings: INFLUX_HOST (http://127.0.0.1:8181), INFLUX_RETENTION (400d).
set -eu

command -v influxdb3 >/dev/null 2>&1 || {
    echo "$0: the influxdb3 CLI is not installed (it ships with InfluxDB 3)" >&2
    exit 2
}
: "${INFLUX_TOKEN:?set INFLUX_TOKEN to an admin token (influxdb3 create token --admin)}"
host=${INFLUX_HOST:-http://127.0.0.1:8181}
retention=${INFLUX_RETENTION:-400d}

# --retention-period needs InfluxDB 3.1+; older servers keep data until deleted.
if ! influxdb3 show databases --host "$host" --token "$INFLUX_TOKEN" | grep -qw redox; then
    influxdb3 create database --host "$host" --token "$INFLUX_TOKEN" \
        --retention-period "$retention" redox \
    || influxdb3 create database --host "$host" --token "$INFLUX_TOKEN" redox
fi
echo "database redox ready on $host."
echo "Core has admin tokens only; Enterprise can make narrower ones, e.g.:"
echo "  influxdb3 create token --permission 'db:redox:write' --name redox-streamer"
echo "  influxdb3 create token --permission 'db:redox:read' --name grafana"
