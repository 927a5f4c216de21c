#!/usr/bin/env bash
# The Django demo behind bext (run by `make demo`; Ctrl-C stops everything).
#
#   1. makes sure .venv/ exists with bext and django-bext (editable);
#   2. builds the demo into build/demosite with demo/build.py: `bext new demosite` (the
#      starter template, exactly as users get it) plus the example app in demo/app; a
#      previous build is replaced, database included; then installs the project's
#      requirements.txt, runs migrate and collectstatic, and makes the superuser admin / admin;
#   3. starts the app server on 127.0.0.1:$DEMO_APP_PORT (Gunicorn, or Uvicorn), then
#      `bext run -c build/demosite/bext.config.toml`, both in the background; the app's
#      django-bext sends cache invalidations to this bext (BEXT_ADMIN_URL), and bext's
#      response cache lives in build/demosite/.cache/responses (the starter's config keeps
#      the default store location, which $CACHE_DIRECTORY moves, as systemd's does), so a
#      rebuild empties it with the database;
#   4. waits until both answer /health, prints the URLs, and stays in the foreground.
# On Ctrl-C, SIGTERM, or when either server dies, both are stopped (SIGTERM, then SIGKILL
# after 15 s) and waited for, so nothing is left running.
#
# Environment:
#   DEMO_SERVER    gunicorn (default: sync WSGI, 2 workers x 2 threads)
#                  | uvicorn (ASGI, 2 workers; needed for the /ws/echo WebSocket)
#   DEMO_PORT      bext's HTTP port (default 3000)
#   DEMO_TLS_PORT  bext's HTTPS port, TCP and UDP for HTTP/3 (default 3443)
#   DEMO_APP_PORT  the app server's port (default 8000)
#   DEMO_BUILD_DIR where the project is built, as DEMO_BUILD_DIR/demosite (default build/)
#   PYTHON         interpreter used to create .venv (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(realpath -m -- "${DEMO_BUILD_DIR:-$ROOT/build}")"
SITE="$BUILD/demosite"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
SERVER="${DEMO_SERVER:-gunicorn}"
PORT="${DEMO_PORT:-3000}"
TLS_PORT="${DEMO_TLS_PORT:-3443}"
APP_PORT="${DEMO_APP_PORT:-8000}"
CONFIG="$SITE/bext.config.toml"

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

case "$SERVER" in
    gunicorn | uvicorn) ;;
    *) die "DEMO_SERVER must be gunicorn or uvicorn, not '$SERVER'" ;;
esac
for value in "$PORT" "$TLS_PORT" "$APP_PORT"; do
    [[ "$value" =~ ^[0-9]+$ ]] && ((value > 0 && value < 65536)) || die "bad port: '$value'"
done
[[ "$PORT" != "$APP_PORT" && "$PORT" != "$TLS_PORT" && "$TLS_PORT" != "$APP_PORT" ]] ||
    die "DEMO_PORT, DEMO_TLS_PORT and DEMO_APP_PORT must differ"

APP_PID=""
BEXT_PID=""

stop() { # stop NAME PID: SIGTERM, up to 15 s for a graceful exit, then SIGKILL; reap it
    local name="$1" pid="$2" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    say "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name did not stop in 15 s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop bext "$BEXT_PID"
    stop "$SERVER" "$APP_PID"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. the virtualenv ------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
    say "creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
fi
if ! "$PY" -c "import bext" 2>/dev/null; then
    say "installing bext into $VENV"
    "$PY" -m pip install -q -e "$ROOT"
fi
if ! "$PY" -c "import django_bext" 2>/dev/null; then
    say "installing django-bext into $VENV"
    "$PY" -m pip install -q -e "$ROOT/integrations/django-bext"
fi

# -- 2. the Django project --------------------------------------------------------------
port_busy() { # port_busy PORT: true when something accepts connections on 127.0.0.1:PORT
    "$PY" -c 'import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}
# Checked before building: a demo already running on these ports keeps its files.
port_busy "$APP_PORT" && die "127.0.0.1:$APP_PORT is already in use (set DEMO_APP_PORT)"
port_busy "$PORT" && die "127.0.0.1:$PORT is already in use (set DEMO_PORT)"
port_busy "$TLS_PORT" && die "127.0.0.1:$TLS_PORT is already in use (set DEMO_TLS_PORT)"

say "building $SITE (bext new demosite + demo/app)"
"$PY" "$ROOT/demo/build.py" --dest "$BUILD" --port "$PORT" --tls-port "$TLS_PORT" \
    --app-port "$APP_PORT" >/dev/null
"$PY" -m pip install -q --disable-pip-version-check -r "$SITE/requirements.txt"
cd "$SITE"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py ensure_demo_admin --username admin --password admin >/dev/null
"$VENV/bin/bext" check -c "$CONFIG" >/dev/null

# -- 3. the servers ---------------------------------------------------------------------
export BEXT_ADMIN_URL="http://127.0.0.1:$PORT" # where django-bext sends invalidations
say "starting $SERVER on 127.0.0.1:$APP_PORT"
if [[ "$SERVER" == gunicorn ]]; then
    "$VENV/bin/gunicorn" --chdir "$SITE" --bind "127.0.0.1:$APP_PORT" \
        --workers 2 --threads 2 --timeout 30 demosite.wsgi &
else
    "$VENV/bin/uvicorn" --app-dir "$SITE" --host 127.0.0.1 --port "$APP_PORT" \
        --workers 2 shop.asgi:application &
fi
APP_PID=$!

say "starting bext on 127.0.0.1:$PORT"
CACHE_DIRECTORY="$SITE/.cache" "$VENV/bin/bext" run -c "$CONFIG" &
BEXT_PID=$!

wait_for() { # wait_for NAME PID URL: until URL answers 200, the process dies, or 30 s pass
    local name="$1" pid="$2" url="$3" i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up"
        if "$PY" -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
except Exception:
    sys.exit(1)' "$url"; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer $url within 30 s"
}
wait_for "$SERVER" "$APP_PID" "http://127.0.0.1:$APP_PORT/health"
wait_for bext "$BEXT_PID" "http://127.0.0.1:$PORT/health"

BASE="http://127.0.0.1:$PORT"
cat >&2 <<EOF

  bext demo is up: bext on $BASE -> $SERVER on 127.0.0.1:$APP_PORT
  project: $SITE (\`bext new demosite\` + demo/app; rebuilt by every \`make demo\`)

    page      $BASE/
    form      $BASE/form/
    admin     $BASE/admin/   (user admin, password admin)
    whoami    $BASE/whoami
    stream    $BASE/stream   (try: curl -N $BASE/stream)
    events    $BASE/events
    download  $BASE/download?size=1048576
    upload    curl --data-binary @FILE $BASE/upload
    products  $BASE/products/   (cached by bext for 60 s: see the Cache-Status header;
              saving a product in the admin purges it)
    vary      $BASE/lang/   no cache: $BASE/cookie/   stale-if-error: $BASE/stale-if-error/
EOF
cat >&2 <<EOF

  HTTPS (HTTP/1.1, HTTP/2, HTTP/3): https://localhost:$TLS_PORT/ with a certificate from bext's
  local CA; \`bext cert\` shows where it is and how to trust it, for example:
    curl --cacert "\$($VENV/bin/bext cert --path)" https://localhost:$TLS_PORT/whoami
EOF
if [[ "$SERVER" == uvicorn ]]; then
    printf '    websocket ws://127.0.0.1:%s/ws/echo\n' "$PORT" >&2
fi
printf '\n  Ctrl-C stops both.\n\n' >&2

# -- 4. stay up until Ctrl-C / SIGTERM or until either server exits --------------------
set +e
wait -n "$APP_PID" "$BEXT_PID"
status=$?
set -e
if ! kill -0 "$APP_PID" 2>/dev/null; then
    say "$SERVER exited (status $status)"
else
    say "bext exited (status $status)"
fi
exit 1
