#!/usr/bin/env bash
# The Debian package end to end (`make deb-test`, run by .ci/run after `make test`):
#
#   build (make deb) -> lintian (fails on errors) -> apt-get install ./dist/bext_*.deb ->
#   installed files, bext --version, bext check, systemd-analyze verify ->
#   packaging/service_check.py: bext run as the bext user on port 80 with a test
#   NOTIFY_SOCKET (READY, HUP -> RELOADING/READY, bext reload, a refused reload, the
#   welcome page, log rotation, a package upgrade = binary upgrade under load, SIGTERM ->
#   STOPPING, exit 0) -> apt-get remove -> dpkg --purge -> nothing left behind.
#
# Needs root (or sudo). A bext package already installed is purged first; state that a
# root-run bext left in /var/lib/bext or /run/bext (e.g. `make test`) is set aside and put
# back after the purge, also when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "deb-test.sh needs root or sudo (it installs and purges the package)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

START=$SECONDS
step() { printf '\n=== [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
ok() { echo "    ok: $*"; }

BACKUP="$(mktemp -d /tmp/bext-deb-test.XXXXXX)"
RUN_BEXT_WAS=""
installed() { dpkg-query -W -f='${Status}' bext 2>/dev/null | grep -q 'ok installed'; }
restore_machine() {
  if [ -f "$BACKUP/var-lib-bext.tar" ]; then
    "${SUDO[@]}" rm -rf /var/lib/bext
    "${SUDO[@]}" tar -C /var/lib -xpf "$BACKUP/var-lib-bext.tar"
    echo "    restored the /var/lib/bext that was there before"
  fi
  if [ -n "$RUN_BEXT_WAS" ]; then
    "${SUDO[@]}" mkdir -p /run/bext
    "${SUDO[@]}" chown "${RUN_BEXT_WAS% *}" /run/bext
    "${SUDO[@]}" chmod "${RUN_BEXT_WAS#* }" /run/bext
  fi
}
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    echo "deb-test: cleaning up after a failure" >&2
    if installed || dpkg-query -W bext >/dev/null 2>&1; then
      "${SUDO[@]}" dpkg --purge bext >/dev/null 2>&1 || true
    fi
    restore_machine
  fi
  "${SUDO[@]}" rm -rf "$BACKUP" "$ROOT/build-deb"
  exit "$status"
}
trap cleanup EXIT

step "build: make deb"
make --no-print-directory deb
mapfile -t debs < <(ls dist/bext_*_amd64.deb)
[ "${#debs[@]}" -eq 1 ] || fail "expected one dist/bext_*_amd64.deb, found: ${debs[*]:-none}"
DEB="$ROOT/${debs[0]}"
VERSION="$(dpkg-deb -f "$DEB" Version)"
ok "$DEB ($(du -h "$DEB" | cut -f1), version $VERSION)"

step "lintian (fails on errors; warnings are overridden in packaging/debian/bext.lintian-overrides)"
lintian_rc=0
lintian_out="$(lintian --fail-on error --display-info "$DEB" 2>&1)" || lintian_rc=$?
echo "$lintian_out" | grep -v '^running with root privileges' || true
[ "$lintian_rc" -eq 0 ] || fail "lintian reports errors (exit $lintian_rc)"
ok "no lintian errors"

step "clean slate"
if dpkg-query -W bext >/dev/null 2>&1; then
  echo "    a bext package is installed: purging it first"
  "${SUDO[@]}" dpkg --purge bext
fi
if [ -e /var/lib/bext ]; then
  "${SUDO[@]}" tar -C /var/lib -cpf "$BACKUP/var-lib-bext.tar" bext
  "${SUDO[@]}" rm -rf /var/lib/bext
  echo "    /var/lib/bext exists (a root-run bext's local CA?): set aside, put back after the purge"
fi
if [ -d /run/bext ]; then
  RUN_BEXT_WAS="$(stat -c '%u:%g %a' /run/bext)"
  echo "    /run/bext exists (root-run bext's control sockets): its owner and mode are put back"
fi
for path in /usr/lib/bext /etc/bext /var/cache/bext /var/log/bext; do
  [ ! -e "$path" ] || fail "$path exists before the install"
done
! getent passwd bext >/dev/null || fail "a bext user exists before the install"
ok "no bext package, user or files"

step "install: apt-get install $DEB"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "$DEB"

step "installed files"
[ "$(readlink -f /usr/bin/bext)" = /usr/lib/bext/venv/bin/bext ] || fail "/usr/bin/bext"
[ "$(head -n1 /usr/lib/bext/venv/bin/bext)" = "#!/usr/lib/bext/venv/bin/python" ] ||
  fail "the venv's bext script does not run /usr/lib/bext/venv/bin/python"
[ "$(readlink -f /usr/lib/bext/venv/bin/python)" = /usr/bin/python3.11 ] || fail "venv python"
! grep -rlsF 'build-deb' /usr/lib/bext/venv || fail "files above name the build directory"
! /usr/lib/bext/venv/bin/python -m pip --version >/dev/null 2>&1 || fail "pip is in the runtime"
[ -n "$(find /usr/lib/bext/venv -name '*.pyc' -print -quit)" ] || fail "postinst compiled no bytecode"
dpkg-query -W -f='${Conffiles}\n' bext | grep -q ' /etc/bext/bext.config.toml ' ||
  fail "/etc/bext/bext.config.toml is not a conffile"
[ "$(getent passwd bext | cut -d: -f6,7)" = "/var/lib/bext:/usr/sbin/nologin" ] ||
  fail "the bext user: $(getent passwd bext)"
for dir in /var/lib/bext /var/cache/bext /var/log/bext; do
  [ "$(stat -c '%U:%G %a' "$dir")" = "bext:bext 750" ] || fail "$dir: $(stat -c '%U:%G %a' "$dir")"
done
for f in /etc/logrotate.d/bext /lib/systemd/system/bext.service; do [ -f "$f" ] || fail "$f is missing"; done
ls /usr/share/doc/bext/examples/django-gunicorn.service /usr/share/doc/bext/examples/django-uvicorn.service >/dev/null
ok "/usr/bin/bext -> venv, shebangs, no pip, bytecode, conffile, user, directories, unit, examples"

step "bext --version"
got="$(bext --version)"
echo "    $got"
[ "$got" = "bext ${VERSION%-*}" ] || fail "expected bext ${VERSION%-*}"

step "bext check /etc/bext/bext.config.toml"
bext check /etc/bext/bext.config.toml

step "systemd-analyze verify"
man_opt=()
if ! man -w bext >/dev/null 2>&1; then
  man_opt=(--man=no)
  echo "    (man or the man page is not available here: --man=no)"
fi
systemd-analyze verify "${man_opt[@]}" /lib/systemd/system/bext.service systemd/bext.service
ok "bext.service"
if out="$(systemd-analyze verify "${man_opt[@]}" systemd/django-gunicorn.service systemd/django-uvicorn.service 2>&1)"; then :; fi
if echo "$out" | grep -v 'is not executable: No such file or directory' | grep -q .; then
  echo "$out"
  fail "the example units"
fi
ok "django-gunicorn.service, django-uvicorn.service (only their app's executables are missing here)"

step "run as the bext user with a test NOTIFY_SOCKET (packaging/service_check.py)"
"${SUDO[@]}" /usr/bin/python3.11 packaging/service_check.py --deb "$DEB"

step "apt-get remove bext"
"${SUDO[@]}" apt-get remove -y -q bext
for path in /usr/lib/bext /usr/bin/bext /lib/systemd/system/bext.service; do
  [ ! -e "$path" ] || fail "$path is left after remove"
done
[ -f /etc/bext/bext.config.toml ] || fail "remove must keep the conffile"
getent passwd bext >/dev/null || fail "remove must keep the bext user"
ok "program files gone; configuration, user and data kept until purge"

step "dpkg --purge bext"
"${SUDO[@]}" dpkg --purge bext
left=()
for path in /usr/lib/bext /usr/bin/bext /etc/bext /etc/logrotate.d/bext /var/lib/bext \
  /var/cache/bext /var/log/bext /run/bext/control.sock /run/bext/bext.pid \
  /lib/systemd/system/bext.service /etc/systemd/system/multi-user.target.wants/bext.service \
  /usr/share/doc/bext /usr/share/man/man1/bext.1.gz; do
  [ ! -e "$path" ] || left+=("$path")
done
[ -n "$RUN_BEXT_WAS" ] || [ ! -e /run/bext ] || left+=(/run/bext)
getent passwd bext >/dev/null && left+=("user bext")
getent group bext >/dev/null && left+=("group bext")
dpkg-query -W bext >/dev/null 2>&1 && left+=("dpkg still knows bext: $(dpkg-query -W -f='${Status}' bext)")
[ "${#left[@]}" -eq 0 ] || fail "left behind after purge: ${left[*]}"
ok "nothing left behind"
restore_machine

step "done in $((SECONDS - START)) s"
