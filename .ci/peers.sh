#!/usr/bin/env bash
# Install and start what the tests talk to: Mosquitto (broker and clients) on 127.0.0.1:1883, and
# the packages of the RTSP test camera (tests/peers/camera.py: GStreamer's RTSP server under
# Debian's python3 with PyGObject; the tests start it themselves), Chromium with a CJK font and the
# browser test's npm packages (playwright-core, axe-core; versions pinned in its lockfile).
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
for p in python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
         chromium fonts-wqy-microhei; do
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
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' && echo "RTSP camera: GStreamer RTSP server available"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "installing the browser test's npm packages"
    npm ci --prefix tests/browser --no-audit --no-fund >/dev/null
fi
echo "browser: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium missing')"
