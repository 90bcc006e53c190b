#!/bin/sh
# Makes sure Debian's headless Chromium and its WebDriver exist for the browser tests of the
# technician's page (tests/web): /usr/bin/chromium and /usr/bin/chromedriver. Without root the
# tests skip with the reason; nothing else needs them.
set -eu
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium or chromedriver not found: installing them with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "apt-get could not install chromium chromium-driver: the browser tests (tests/web) will skip" >&2
  fi
  exit 0
fi
if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  echo "chromium or chromedriver not found: installing them with sudo apt-get" >&2
  if ! { sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "apt-get could not install chromium chromium-driver: the browser tests (tests/web) will skip" >&2
  fi
  exit 0
fi
echo "chromium/chromedriver are not installed and I cannot install them without root;" >&2
echo "the browser tests (tests/web) will skip. Install: sudo apt-get install chromium chromium-driver" >&2
exit 0
