#!/usr/bin/env bash
# Make sure the real servers the tests use are installed: Prometheus (with promtool), PostgreSQL, and
# Debian's chromium (the HTML report is opened in it headless) with chromium-driver (the dashboard's Selenium tests).
# The test fixtures start them on loopback ports; this script only installs what is missing (as root).
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)  # Selenium drives the dashboard's browser tests
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure-services: missing ${need[*]} and not root; the tests that need them will skip (or fail with CI=true)" >&2
  exit 0
fi
echo "ensure-services: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages start system services; the tests run their own instances on free ports.
systemctl stop prometheus postgresql >/dev/null 2>&1 || true
