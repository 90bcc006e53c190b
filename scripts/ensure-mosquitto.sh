#!/bin/sh
# Makes sure a mosquitto broker binary exists (tests and the demo start their own instance on a
# free port; the system service, if any, is left alone).
set -eu
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "mosquitto not found: installing it with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  exit 0
fi
if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "mosquitto not found: installing it with sudo apt-get" >&2
  sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  exit 0
fi
echo "mosquitto is not installed and I cannot install it without root." >&2
echo "Install it with:  sudo apt-get install mosquitto   (or set MQTT_BROKER=host:port for the demo)" >&2
exit 1
