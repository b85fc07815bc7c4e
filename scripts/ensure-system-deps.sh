#!/usr/bin/env bash
# Installs the Debian packages the test suite needs and does nothing when they are already there.
# Called by `pnpm test` (scripts/run-tests.mjs) and by .ci/run. Needs root (or sudo) for apt-get.
# Set EDGEFLEET_SKIP_SYSTEM_DEPS=1 to skip (you then provide them yourself).
set -euo pipefail

# command → Debian package that provides it
declare -A NEEDED=(
  [/usr/bin/chromium]=chromium
  [/usr/bin/systemd-analyze]=systemd
  [/usr/bin/curl]=curl
  [/usr/lib/postgresql/15/bin/initdb]=postgresql
  [/usr/sbin/mosquitto]=mosquitto
  [/usr/sbin/nats-server]=nats-server
)

missing=()
for path in "${!NEEDED[@]}"; do
  [ -x "$path" ] || missing+=("${NEEDED[$path]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  run() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
  run() { sudo "$@"; }
else
  echo "edgefleet tests need Debian packages: ${missing[*]}. Install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "installing Debian packages for the tests: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
run apt-get update -qq
run apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
