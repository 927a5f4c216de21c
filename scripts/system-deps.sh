#!/usr/bin/env bash
# Install the Debian packages a target needs, only when something is missing.
#   scripts/system-deps.sh test   -> python3-venv, curl, h2load, openssl (what `make test` needs)
#   scripts/system-deps.sh bench  -> nginx-light, wrk, nghttp2-client (h2load)
set -euo pipefail

case "${1:-test}" in
  test)  need=(python3-venv curl nghttp2-client openssl) ; probe() { python3 -c 'import venv, ensurepip' 2>/dev/null && command -v curl >/dev/null && command -v h2load >/dev/null && command -v openssl >/dev/null; } ;;
  bench) need=(nginx-light wrk nghttp2-client) ; probe() { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; command -v wrk >/dev/null && command -v h2load >/dev/null; } ;;
  *) echo "usage: $0 test|bench" >&2; exit 2 ;;
esac

if probe; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "missing packages ${need[*]} and no root/sudo to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q "${need[@]}"
