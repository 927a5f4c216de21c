"""Health probes and Django's host check: the probe's Host, and failing open.

The demo under Gunicorn with ``ALLOWED_HOSTS = ["example.com"]`` answers ``/`` with ``400``
for any other Host, which is what took sites down when probes sent ``Host: 127.0.0.1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.test_health_checks import upstream_states, wait_state
from tests.support.django_app import DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]
SITE = {"Host": "example.com"}


@pytest.fixture
def strict_django(demo_site: DemoSite) -> Iterator[int]:
    """The demo under Gunicorn serving only Host example.com; yields its port."""
    site = DemoSite(demo_site.root, {**demo_site.env, "DJANGO_ALLOWED_HOSTS": "example.com"})
    port = free_port()
    app = start_gunicorn(site, port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 400  # as a probe saw it
        assert httpx.get(f"http://127.0.0.1:{port}/", headers=SITE).status_code == 200
        yield port
    finally:
        app.stop()


def probe_config(port: int, health_host: str | None = None, rule_host: str | None = None) -> str:
    return config(
        f"""
[upstreams.django]
[[upstreams.django.servers]]
url = "http://127.0.0.1:{port}"
[upstreams.django.health]
enabled = true
path = "/"
interval = "250ms"
timeout = "200ms"
rise = 1
fall = 2
{f'host = "{health_host}"' if health_host else ""}

[[route_rules]]
pattern = "/**"
proxy = "django"
{f'host = "{rule_host}"' if rule_host else ""}
""",
        workers=2,
    )


@pytest.mark.parametrize("where", ["health.host", "route rule host"])
def test_a_probe_with_the_sites_host_passes(
    start_bext: Start, strict_django: int, where: str
) -> None:
    if where == "health.host":
        text = probe_config(strict_django, health_host="example.com")
    else:  # the default: the host of the first rule that proxies to the upstream
        text = probe_config(strict_django, rule_host="example.com")
    server = start_bext(text)
    url = f"http://127.0.0.1:{strict_django}"
    wait_state(server, url, "up")
    time.sleep(1.0)  # four more probe rounds: still up
    assert upstream_states(server)[url] == "up"
    assert httpx.get(server.base_url + "/", headers=SITE).status_code == 200
    assert "failing open" not in server.stderr() and "is down" not in server.stderr()


def test_a_probe_the_app_refuses_fails_open_and_the_site_stays_up(
    start_bext: Start, strict_django: int
) -> None:
    server = start_bext(probe_config(strict_django))  # probes GET / with Host: localhost
    url = f"http://127.0.0.1:{strict_django}"
    wait_state(server, url, "down")
    server.wait_for_log(
        r"upstream django: every server failed its health checks \(last: status 400\); "
        r"failing open.*GET / with Host: localhost"
    )
    deadline = time.monotonic() + 2.0  # eight probe rounds, every one of them failing
    statuses = set()
    while time.monotonic() < deadline:
        statuses.add(httpx.get(server.base_url + "/", headers=SITE, timeout=10).status_code)
        time.sleep(0.05)
    assert statuses == {200}
    assert upstream_states(server)[url] == "down"
    assert server.stderr().count("every server failed its health checks") == 1  # once
