"""bext's response cache in front of the real demo Django app under Gunicorn.

One Gunicorn (2 workers, with an access log that counts what reaches the app) behind one
bext master with 2 workers and ``[cache] enabled`` serves the module; the Gunicorn knows
the master's address (``BEXT_ADMIN_URL``), so django-bext's automatic invalidation after a
commit reaches it. Every test uses URLs of its own (a query string the views ignore) or
products of its own, so they do not see each other's entries. The stale-if-error test,
which stops its Gunicorn, gets a pair of its own.

The admin endpoint answers loopback peers, or any peer with ``[admin] token``; that another
peer is refused without the token is tested in tests/worker/test_admin.py, with the peer
address injected (these tests send traffic to 127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.django_app import AppServer, DemoSite, django_upstream, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, config

TOKEN = "demo-cache-token-0123456789"
RENDERED = re.compile(r'data-role="rendered">([0-9a-f]{32})<')
INVALIDATE = "/__bext/cache/invalidate"


def bext_config(app_port: int, store: Path, hosts: list[str]) -> str:
    routes = f"""
[admin]
token = "{TOKEN}"

[cache]
enabled = true
path = "{store}"

{django_upstream(app_port)}

[[route_rules]]
pattern = "/**"
proxy = "django"
"""
    return config(routes, host=hosts, workers=2).replace("'", '"')


@dataclass
class Stack:
    bext: BextProcess
    app: AppServer
    site: DemoSite
    access_log: Path

    @property
    def url(self) -> str:
        return self.bext.base_url

    def app_hits(self, target: str) -> int:
        """How many ``GET target`` requests Gunicorn answered."""
        needle = f'"GET {target} HTTP/1.1"'
        return self.access_log.read_text(errors="replace").count(needle)

    def settled_app_hits(self, target: str, at_least: int = 1) -> int:
        """``app_hits`` once it reached ``at_least`` (Gunicorn logs after answering)."""
        deadline = time.monotonic() + 5
        while self.app_hits(target) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything more would show up now
        return self.app_hits(target)

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell`` of the demo, its django-bext aimed at bext."""
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=self.site.root,
            env=self.site.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "WARNING" not in done.stderr and "django_bext" not in done.stderr, done.stderr
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture(scope="module")
def stack(demo_site: DemoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("bext-cache")
    hosts = ["127.0.0.1"]
    app_port = free_port()
    bext = BextProcess(workdir, bext_config(app_port, workdir / "store", hosts))
    access_log = workdir / "gunicorn-access.log"
    app: AppServer | None = None
    try:
        bext.start()
        site = replace(demo_site, env={**demo_site.env, "BEXT_ADMIN_URL": bext.base_url})
        app = start_gunicorn(site, app_port, workers=2, access_log=access_log)
        yield Stack(bext, app, site, access_log)
    finally:
        bext.stop()
        if app is not None:
            app.stop()


def unique() -> str:
    return uuid.uuid4().hex[:12]


def status_of(response: httpx.Response | http.client.HTTPResponse) -> str:
    value = response.headers.get("cache-status")
    assert value, "no Cache-Status"
    return str(value)


def is_stored_miss(cache_status: str) -> bool:
    return cache_status.startswith("bext;fwd=") and cache_status.endswith(";stored")


def is_hit(cache_status: str) -> bool:
    return cache_status.startswith("bext;hit;")


def rendered(text: str) -> str:
    match = RENDERED.search(text)
    if match:
        return match.group(1)
    document = json.loads(text)
    return str(document["rendered"])


def price_of(name: str, page: str) -> str | None:
    """The price /products/ shows for the product ``name``."""
    match = re.search(rf'{re.escape(name)}</td>\s*<td class="price">([0-9.]+)<', page)
    return match.group(1) if match else None


def owners(server: BextProcess) -> dict[int, int]:
    """Client port -> the worker holding that client's (open) connection."""
    found = {}
    for pid in server.worker_pids():
        for conn in psutil.Process(pid).net_connections("tcp"):
            if conn.laddr.port == server.port and conn.raddr:
                found[conn.raddr.port] = pid
    return found


def owner(server: BextProcess, client_port: int) -> int:
    """The worker holding the connection from ``client_port``."""
    pid = owners(server).get(client_port)
    assert pid is not None, f"no worker holds the connection from port {client_port}"
    return pid


def test_public_page_is_fetched_once_then_a_hit_on_both_workers(stack: Stack) -> None:
    target = f"/products/?t={unique()}"
    first = httpx.get(stack.url + target)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=60"
    status = status_of(first)
    assert status.startswith("bext;fwd=uri-miss;fwd-status=200") and is_stored_miss(status)
    assert "cache-tag" not in first.headers  # edge-only: bext keeps it
    body = rendered(first.text)

    workers = set(stack.bext.worker_pids())
    assert len(workers) == 2
    seen: dict[int, int] = {}
    for _ in range(60):  # fresh connections: SO_REUSEPORT hashes each to one worker
        conn = http.client.HTTPConnection("127.0.0.1", stack.bext.port, timeout=10)
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            text = response.read().decode()
            assert response.status == 200
            assert is_hit(status_of(response)), status_of(response)
            assert rendered(text) == body
            pid = owner(stack.bext, conn.sock.getsockname()[1])
        finally:
            conn.close()
        seen[pid] = seen.get(pid, 0) + 1
        if set(seen) == workers and sum(seen.values()) >= 10:
            break
    assert set(seen) == workers, seen
    assert stack.settled_app_hits(target) == 1


def test_vary_accept_language_keeps_one_copy_per_language(stack: Stack) -> None:
    target = f"/lang/?t={unique()}"
    first: dict[str, str] = {}
    for language in ("fr", "de"):
        r = httpx.get(stack.url + target, headers={"Accept-Language": language})
        assert r.status_code == 200 and r.json()["accept_language"] == language
        assert "accept-language" in r.headers["vary"].lower()
        assert is_stored_miss(status_of(r)), status_of(r)
        first[language] = r.json()["rendered"]
    assert first["fr"] != first["de"]
    for language in ("fr", "de", "fr", "de"):
        r = httpx.get(stack.url + target, headers={"Accept-Language": language})
        assert is_hit(status_of(r)), status_of(r)
        assert r.json() == {"accept_language": language, "rendered": first[language]}
    assert stack.settled_app_hits(target, 2) == 2


def test_a_response_that_sets_a_cookie_is_never_stored(stack: Stack) -> None:
    target = f"/cookie/?t={unique()}"
    cookies = set()
    for _ in range(3):
        r = httpx.get(stack.url + target)
        assert r.status_code == 200
        assert r.headers["cache-control"] == "public, max-age=60"
        assert "demo_visit" in r.cookies
        status = status_of(r)
        assert status.startswith("bext;fwd=") and "stored" not in status, status
        cookies.add(r.cookies["demo_visit"])
    assert len(cookies) == 3
    assert stack.settled_app_hits(target, 3) == 3


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


@contextlib.contextmanager
def admin_client(stack: Stack) -> Iterator[httpx.Client]:
    """A client logged in to the demo's admin as admin / admin, through bext."""
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        login = client.get("/admin/login/")
        r = client.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": csrf_token(login.text), "username": "admin",
            "password": "admin", "next": "/admin/",
        })  # fmt: skip
        assert r.status_code == 302 and r.headers["location"] == "/admin/", r.text[:500]
        yield client


def test_a_logged_in_admin_page_is_never_served_to_anonymous_clients(stack: Stack) -> None:
    with admin_client(stack) as admin:
        for _ in range(2):
            page = admin.get("/admin/")
            assert page.status_code == 200 and "Site administration" in page.text
            status = status_of(page)
            assert not is_hit(status) and "stored" not in status, status

    for _ in range(2):
        anonymous = httpx.get(stack.url + "/admin/")
        assert anonymous.status_code == 302, anonymous.text[:300]
        assert anonymous.headers["location"].startswith("/admin/login/")
        assert "Site administration" not in anonymous.text
        assert not is_hit(status_of(anonymous)), status_of(anonymous)


@pytest.mark.parametrize("target", ["/products/", "/products/async/"])
def test_saving_a_product_purges_the_product_list(stack: Stack, target: str) -> None:
    """django-bext's post_save -> on_commit -> POST /__bext/cache/invalidate (tag
    shop.product), from a process other than the app server."""
    name = f"Lamp {unique()}"
    pk = stack.shell(
        "from shop.models import Product\n"
        f"print(Product.objects.create(name={name!r}, price='10.00').pk)"
    )
    r = httpx.get(stack.url + target)
    assert r.status_code == 200 and name in r.text
    r = httpx.get(stack.url + target)
    assert is_hit(status_of(r)), status_of(r)
    assert price_of(name, r.text) == "10.00"

    stack.shell(
        "from shop.models import Product\n"
        f"p = Product.objects.get(pk={pk})\n"
        "p.price = '12.34'\n"
        "p.save()"
    )
    r = httpx.get(stack.url + target)
    assert is_stored_miss(status_of(r)), status_of(r)
    assert price_of(name, r.text) == "12.34"
    r = httpx.get(stack.url + target)
    assert is_hit(status_of(r)) and price_of(name, r.text) == "12.34"


def test_saving_a_product_in_the_admin_purges_the_product_list(stack: Stack) -> None:
    """The change form posted through bext: Gunicorn's django-bext tells bext itself."""
    name = f"Kettle {unique()}"
    pk = stack.shell(
        "from shop.models import Product\n"
        f"print(Product.objects.create(name={name!r}, price='20.00').pk)"
    )
    assert price_of(name, httpx.get(stack.url + "/products/").text) == "20.00"
    r = httpx.get(stack.url + "/products/")
    assert is_hit(status_of(r)) and price_of(name, r.text) == "20.00", status_of(r)

    with admin_client(stack) as admin:
        change = f"/admin/shop/product/{pk}/change/"
        form = admin.get(change)
        assert form.status_code == 200 and name in form.text
        r = admin.post(change, data={
            "csrfmiddlewaretoken": csrf_token(form.text), "name": name,
            "price": "21.50", "description": "", "_save": "Save",
        })  # fmt: skip
        assert r.status_code == 302, r.text[:500]

    r = httpx.get(stack.url + "/products/")
    assert is_stored_miss(status_of(r)), status_of(r)
    assert price_of(name, r.text) == "21.50"


def test_invalidate_by_tag_from_loopback(stack: Stack) -> None:
    target = f"/products/?t={unique()}"
    assert is_stored_miss(status_of(httpx.get(stack.url + target)))
    assert is_hit(status_of(httpx.get(stack.url + target)))

    r = httpx.post(stack.url + INVALIDATE, json={"tags": ["products"]})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    r = httpx.get(stack.url + target)
    assert is_stored_miss(status_of(r)), status_of(r)
    assert stack.settled_app_hits(target, 2) == 2


def test_soft_purge_serves_stale_while_refreshing(stack: Stack) -> None:
    name = f"Mug {unique()}"
    pk = stack.shell(
        "from shop.models import Product\n"
        f"print(Product.objects.create(name={name!r}, price='5.00').pk)"
    )
    target = f"/products/?t={unique()}"
    first = httpx.get(stack.url + target)
    assert is_stored_miss(status_of(first)) and name in first.text
    # update() sends no signal: the cache keeps the old page until it is told
    stack.shell(
        f"from shop.models import Product\nProduct.objects.filter(pk={pk}).update(price='6.00')"
    )
    r = httpx.get(stack.url + target)
    assert is_hit(status_of(r)) and price_of(name, r.text) == "5.00"

    r = httpx.post(stack.url + INVALIDATE, json={"tags": ["products"], "soft": True})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    stale = httpx.get(stack.url + target)
    assert stale.status_code == 200
    assert 'detail="soft-purged"' in status_of(stale), status_of(stale)
    assert price_of(name, stale.text) == "5.00"

    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(stack.url + target)
        if price_of(name, r.text) == "6.00":
            break
        assert time.monotonic() < deadline, f"never refreshed: {status_of(r)}"
        time.sleep(0.1)
    assert is_hit(status_of(r)) and "soft-purged" not in status_of(r), status_of(r)
    assert stack.settled_app_hits(target, 2) == 2


def test_concurrent_misses_reach_the_app_once(stack: Stack) -> None:
    """50 clients on fresh connections, over both workers, ask for one uncached URL that
    takes 0.5 s: one request goes to Django, the others wait for it and share its answer."""
    target = f"/slow-cached/?run={unique()}"
    clients = 50
    start = threading.Barrier(clients)
    finished = threading.Barrier(clients + 1)
    answers: list[tuple[int, str, str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fetch() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.bext.port, timeout=30)
        try:
            conn.connect()
            start.wait(10)
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read().decode()
            with lock:
                answers.append((response.status, status_of(response), rendered(body),
                                conn.sock.getsockname()[1]))  # fmt: skip
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            try:
                finished.wait(30)  # connections stay open until the workers are looked up
            finally:
                conn.close()

    threads = [threading.Thread(target=fetch) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(answers) + len(errors) < clients and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not errors, errors[:3]
        assert len(answers) == clients
        held = owners(stack.bext)
        by_worker = {port: held.get(port) for *_, port in answers}
    finally:
        finished.wait(30)
        for thread in threads:
            thread.join(10)
    assert None not in by_worker.values(), by_worker
    assert len(set(by_worker.values())) == 2, "the 50 connections all went to one worker"
    assert {status for status, *_ in answers} == {200}
    statuses = [(cache_status, by_worker[port]) for _, cache_status, _, port in answers]
    assert sum(s.startswith("bext;fwd=") for s, _ in statuses) == 1, statuses
    assert len({body for _, _, body, _ in answers}) == 1
    assert stack.settled_app_hits(target) == 1


Start = Callable[..., BextProcess]


def test_stale_if_error_serves_the_stored_page_while_the_app_is_down(
    demo_site: DemoSite, start_bext: Start, tmp_path: Path
) -> None:
    port = free_port()
    app = start_gunicorn(demo_site, port)
    try:
        server = start_bext(bext_config(port, tmp_path / "store", ["127.0.0.1"]))
        first = httpx.get(server.base_url + "/stale-if-error/")
        assert first.headers["cache-control"] == "public, max-age=1, stale-if-error=300"
        assert is_stored_miss(status_of(first)), status_of(first)
        assert is_hit(status_of(httpx.get(server.base_url + "/stale-if-error/")))
    finally:
        app.stop()
    time.sleep(1.5)  # stale now; the app is down

    r = httpx.get(server.base_url + "/stale-if-error/")
    assert r.status_code == 200, r.text[:300]
    assert r.json() == first.json()
    status = status_of(r)
    assert status.startswith("bext;fwd=stale;fwd-status=5") and 'detail="stale-if-error"' in status
    # without stale-if-error, the same outage is an error: the store is not a fallback
    assert httpx.get(server.base_url + "/lang/").status_code == 502
