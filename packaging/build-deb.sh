#!/usr/bin/env bash
# Build the Debian package (run by `make deb`): dist/bext_VERSION_amd64.deb.
#
# The source tree (files git tracks or would track, so no .venv/ or build output) is
# copied to build-deb/bext-VERSION/ with packaging/debian/ as its debian/, then
# `dpkg-buildpackage -us -uc -b` runs there. The build needs the package index (pip
# installs packaging/requirements.lock into the package's private virtualenv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

deb_version="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
upstream="${deb_version%-*}"
code_version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' bext/__init__.py)"
if [ "$upstream" != "$code_version" ]; then
  echo "packaging/debian/changelog is at $deb_version but bext is $code_version:" >&2
  echo "add a changelog entry (e.g. dch -c packaging/debian/changelog -v $code_version-1)." >&2
  exit 1
fi

BUILD="$ROOT/build-deb"
SRC="$BUILD/bext-$upstream"
rm -rf "$BUILD"
mkdir -p "$SRC" "$ROOT/dist"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$SRC"
else
  tar --exclude=./.venv --exclude=./dist --exclude=./build-deb --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.git -cf - . | tar -xf - -C "$SRC"
fi
rm -rf "$SRC/debian"
cp -a packaging/debian "$SRC/debian"

echo "== dpkg-buildpackage -us -uc -b (bext $deb_version)"
(cd "$SRC" && dpkg-buildpackage -us -uc -b)

rm -f "$ROOT"/dist/bext_*.deb
mv "$BUILD"/bext_"$deb_version"_*.deb "$ROOT/dist/"
ls -l "$ROOT"/dist/bext_*.deb
