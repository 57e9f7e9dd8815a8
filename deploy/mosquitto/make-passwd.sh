#!/bin/sh
# Write a mosquitto password file for the users in deploy/mosquitto/acl.
#
#   deploy/mosquitto/make-passwd.sh deploy/mosquitto/passwd
#
# Passwords come from the environment when set, else fresh random ones are generated and
# printed ONCE (put them into the streamer's config file, `notify --password`, Home
# Assistant's MQTT integration):
#   REDOX_STREAMER_PASSWORD  user redox-streamer  (publishes under redox/#)
#   REDOX_NOTIFY_PASSWORD    user redox-notify    (reads alerts, publishes nothing)
#   REDOX_CLI_PASSWORD       user redox-cli       (session, rpe, status, doctor: the
#                                                  config's [mqtt.cli])
#   HOMEASSISTANT_PASSWORD   user homeassistant   (reads redox/#, discovery)
#   REDOX_GATEWAY_PASSWORD   user redox-gateway   (team mode: every gateway; its state,
#                                                  reads commands)
#   REDOX_WORKER_PASSWORD    user redox-worker    (team mode: every worker; results)
# The file holds salted hashes, never the passwords. mosquitto must be able to read it:
# in the container it runs as uid 1883, on Debian as user mosquitto, e.g.
#   sudo chown root:mosquitto /etc/mosquitto/passwd && sudo chmod 640 /etc/mosquitto/passwd
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 PASSWORD_FILE   (e.g. deploy/mosquitto/passwd)" >&2
    exit 2
fi
out=$1
command -v mosquitto_passwd >/dev/null 2>&1 || {
    echo "$0: mosquitto_passwd not found: install the 'mosquitto' package (Debian/Raspberry Pi OS)" >&2
    exit 2
}

random_password() {
    # 18 random bytes, base64 without characters a shell or URL would mangle.
    head -c 18 /dev/urandom | base64 | tr -d '\n' | tr '+/' 'xy'
}

umask 077
tmp=$(mktemp "${out}.XXXXXX")
trap 'rm -f "$tmp"' EXIT
: >"$tmp"
for pair in redox-streamer:REDOX_STREAMER_PASSWORD redox-notify:REDOX_NOTIFY_PASSWORD \
            redox-cli:REDOX_CLI_PASSWORD homeassistant:HOMEASSISTANT_PASSWORD \
            redox-gateway:REDOX_GATEWAY_PASSWORD redox-worker:REDOX_WORKER_PASSWORD; do
    user=${pair%%:*}
    var=${pair#*:}
    eval "password=\${$var:-}"
    if [ -z "$password" ]; then
        password=$(random_password)
        echo "$user: $password   (generated; set $var to choose it)"
    fi
    mosquitto_passwd -b "$tmp" "$user" "$password"
done
chmod 640 "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out (users: redox-streamer, redox-notify, redox-cli, homeassistant, redox-gateway, redox-worker)" >&2
