#!/bin/sh
# Set up InfluxDB 2.x for redox-streamer with the `influx` CLI: organisation, bucket with
# a 400-day retention, a write token for the streamer, a read token for Grafana, and the
# DBRP mapping that lets the InfluxQL dashboards (and the v1 /query API) find the bucket
# as database "redox", retention policy "400d".
#
# Fresh server (runs `influx setup` first):
#   INFLUX_ADMIN_PASSWORD=... deploy/influxdb/v2/setup.sh
# Server already set up: give an operator/all-access token instead:
#   INFLUX_TOKEN=... deploy/influxdb/v2/setup.sh
#
# Settings (environment): INFLUX_HOST (http://127.0.0.1:8086), INFLUX_ORG (redox),
# INFLUX_BUCKET (redox), INFLUX_RETENTION (400d), INFLUX_ADMIN_USER (admin).
# Prints the two tokens at the end: put the write token in the streamer's config
#   [influx] url = "http://HOST:8086"  api = "v2"  org = "redox"  bucket = "redox"
#   token = "<write token>"   (or REDOX_INFLUX_TOKEN in the environment)
# and the read token in deploy/grafana/provisioning/datasources (REDOX_GRAFANA_INFLUX_TOKEN).
set -eu

command -v influx >/dev/null 2>&1 || {
    echo "$0: the influx CLI (v2) is not installed: see docs.influxdata.com 'install influx CLI'" >&2
    exit 2
}
export INFLUX_HOST=${INFLUX_HOST:-http://127.0.0.1:8086}
org=${INFLUX_ORG:-redox}
bucket=${INFLUX_BUCKET:-redox}
retention=${INFLUX_RETENTION:-400d}
db=redox
rp=400d

if [ -z "${INFLUX_TOKEN:-}" ]; then
    : "${INFLUX_ADMIN_PASSWORD:?set INFLUX_ADMIN_PASSWORD for a fresh server, or INFLUX_TOKEN for one already set up}"
    # --force: no interactive confirmation. Fails (and stops here) if already set up.
    influx setup --org "$org" --bucket "$bucket" --retention "$retention" \
        --username "${INFLUX_ADMIN_USER:-admin}" --password "$INFLUX_ADMIN_PASSWORD" --force
    # The CLI stored the operator token in its active config; later commands use it.
fi

if ! influx bucket list --org "$org" --name "$bucket" >/dev/null 2>&1; then
    influx bucket create --org "$org" --name "$bucket" --retention "$retention"
fi
bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | awk '{print $1}')
[ -n "$bucket_id" ] || { echo "$0: bucket $bucket not found in org $org" >&2; exit 1; }

# InfluxQL (Grafana's InfluxQL datasource, the v1 /query and /write APIs) addresses data
# as database/retention policy; this mapping points "redox"/"400d" at the bucket.
if ! influx v1 dbrp list --org "$org" --db "$db" --hide-headers 2>/dev/null | grep -q "$bucket_id"; then
    influx v1 dbrp create --org "$org" --db "$db" --rp "$rp" --bucket-id "$bucket_id" --default
fi

token_of() { sed -n 's/.*"token": *"\([^"]*\)".*/\1/p'; }
write_token=$(influx auth create --org "$org" --description "redox-streamer (write $bucket)" \
    --write-bucket "$bucket_id" --json | token_of)
read_token=$(influx auth create --org "$org" --description "grafana (read $bucket)" \
    --read-bucket "$bucket_id" --json | token_of)

echo "bucket $bucket ($bucket_id), retention $retention, DBRP $db/$rp -> bucket"
echo "streamer write token: $write_token"
echo "grafana read token:   $read_token"
