# Run by the influxdb:1.8 image on first start (mounted in /docker-entrypoint-initdb.d/).
# The image SOURCES this file while a temporary influxd listens on 127.0.0.1, after it has
# created the admin user from INFLUXDB_ADMIN_USER/INFLUXDB_ADMIN_PASSWORD; so: no `set -e`
# or `exit` here, and setup.sh runs in its own shell.
INFLUX_ADMIN_USER="$INFLUXDB_ADMIN_USER" INFLUX_ADMIN_PASSWORD="$INFLUXDB_ADMIN_PASSWORD" \
    sh /redox-setup/setup.sh "http://127.0.0.1:${INFLUXDB_INIT_PORT:-8086}"
