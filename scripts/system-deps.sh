#!/usr/bin/env bash
# Install the Debian packages a target needs, only when something is missing.
#   scripts/system-deps.sh test   -> python3-venv, curl, h2load, openssl, modsecurity-crs (the
#                                    OWASP CRS rules `[waf]` loads), chromium (the headless
#                                    browser of the /__bext/status page test) (what `make test`
#                                    needs)
#   scripts/system-deps.sh bench  -> nginx-light, wrk, nghttp2-client (h2load), and nginx's
#                                    ModSecurity module with the same CRS (libnginx-mod-http-
#                                    modsecurity, modsecurity-crs) for the WAF comparison
# Each target first probes for what it needs (commands on PATH, packages dpkg reports
# installed), so with everything present it returns at once without apt or sudo.
#   scripts/system-deps.sh deb    -> what `make deb` / `make deb-test` need: debhelper,
#                                    build-essential, fakeroot, lintian, python3.11-venv,
#                                    adduser (the .deb's dependency), logrotate, curl and
#                                    systemd (systemd-analyze) for the tests
set -euo pipefail

# True when every named Debian package is installed (not merely unpacked or removed).
installed() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || return 1
  done
}

case "${1:-test}" in
  test)  need=(python3-venv curl nghttp2-client openssl modsecurity-crs chromium) ; probe() { python3 -c 'import venv, ensurepip' 2>/dev/null && command -v curl >/dev/null && command -v h2load >/dev/null && command -v openssl >/dev/null && installed modsecurity-crs && { command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; }; } ;;
  bench) need=(nginx-light wrk nghttp2-client libnginx-mod-http-modsecurity modsecurity-crs) ; probe() { { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } && command -v wrk >/dev/null && command -v h2load >/dev/null && installed libnginx-mod-http-modsecurity modsecurity-crs; } ;;
  deb)   need=(debhelper build-essential fakeroot lintian python3.11-venv adduser logrotate curl systemd) ; probe() { command -v dh >/dev/null && command -v dpkg-buildpackage >/dev/null && command -v fakeroot >/dev/null && command -v lintian >/dev/null && installed build-essential && /usr/bin/python3.11 -c 'import venv, ensurepip' 2>/dev/null && command -v adduser >/dev/null && command -v logrotate >/dev/null && command -v curl >/dev/null && command -v systemd-analyze >/dev/null; } ;;
  *) echo "usage: $0 test|bench|deb" >&2; exit 2 ;;
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
