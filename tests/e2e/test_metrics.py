"""``/__bext/metrics`` after a known sequence of requests, read with Prometheus's own
parser: exact counts across two workers, and the same counts after a reload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.origin import Answer, Origin
from tests.support.server import BextProcess, bext_cli, config

Start = Callable[..., BextProcess]


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    server.route("/page", lambda r: Answer(200, [("Content-Type", "text/plain")], b"page\n"))
    server.route("/cached", lambda r: Answer(200, [("Cache-Control", "public, max-age=60")],
                                             b"cached\n"))  # fmt: skip
    yield server
    server.stop()


def site(origin: Origin, store: Path) -> str:
    return config(f"""
[cache]
enabled = true
path = "{store}"

[waf]
enabled = true

[limits.tight]
rate = "1/m"

[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:{origin.port}"

[upstreams.gone]
[[upstreams.gone.servers]]
url = "http://127.0.0.1:9"

[[route_rules]]
pattern = "/limited"
limit = "tight"
respond = {{ status = 200, body = "limited" }}

[[route_rules]]
pattern = "/broken/**"
proxy = "gone"

[[route_rules]]
pattern = "/**"
proxy = "app"
""")


def scrape(server: BextProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.base_url + "/__bext/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_known_sequence_comes_out_exactly(
    start_bext: Start, origin: Origin, tmp_path: Path
) -> None:
    server = start_bext(site(origin, tmp_path / "store"))
    for _ in range(4):  # new connections: the kernel spreads them over both workers
        assert httpx.get(server.base_url + "/page").status_code == 200
    for _ in range(3):
        assert httpx.get(server.base_url + "/missing").status_code == 404  # from the origin
    assert httpx.get(server.base_url + "/broken/x").status_code == 502
    assert httpx.get(server.base_url + "/cached").status_code == 200  # miss, stored
    assert "hit" in httpx.get(server.base_url + "/cached").headers["cache-status"]
    assert httpx.get(server.base_url + "/page", params={"id": "1' OR '1'='1"}).status_code == 403
    assert httpx.get(server.base_url + "/limited").status_code == 200
    assert httpx.get(server.base_url + "/limited").status_code == 429

    samples = scrape(server)
    catch_all = {"rule": "2", "pattern": "/**"}
    assert value(samples, "bext_http_requests_total", **catch_all, code_class="2xx") == 6
    assert value(samples, "bext_http_requests_total", **catch_all, code_class="4xx") == 4
    assert value(samples, "bext_http_requests_total", rule="1", pattern="/broken/**",
                 code_class="5xx") == 1  # fmt: skip
    assert value(samples, "bext_http_requests_total", rule="0", pattern="/limited",
                 code_class="4xx") == 1  # fmt: skip
    assert value(samples, "bext_http_responses_total", code="404") == 3
    assert value(samples, "bext_http_responses_total", code="403") == 1
    assert value(samples, "bext_http_responses_total", code="429") == 1
    assert value(samples, "bext_http_responses_total", code="502") == 1
    assert value(samples, "bext_http_request_duration_seconds_count") == 13
    assert value(samples, "bext_http_request_duration_seconds_bucket", le="+Inf") == 13
    assert value(samples, "bext_cache_requests_total", outcome="hit") == 1
    assert value(samples, "bext_cache_requests_total", outcome="stored") == 1
    assert value(samples, "bext_waf_requests_total", outcome="blocked") == 1
    assert value(samples, "bext_rate_limited_total") == 1
    assert value(samples, "bext_upstream_errors_total", upstream="gone", kind="connect") == 1
    # 4 pages, 3 misses and the cache's one fetch went upstream to app.
    assert value(samples, "bext_upstream_response_seconds_count", upstream="app") == 8
    assert value(samples, "bext_upstream_up", upstream="app",
                 server=f"http://127.0.0.1:{origin.port}") == 1  # fmt: skip
    assert value(samples, "bext_connections_accepted_total", version="1.1") >= 13
    workers = [key for key in samples if key[0] == "bext_process_resident_memory_bytes"]
    assert len(workers) == 3  # the master and two workers

    assert bext_cli(server, "reload").returncode == 0
    after = scrape(server)  # counters live in the master's segment: a reload keeps them
    assert value(after, "bext_http_responses_total", code="404") == 3
    assert value(after, "bext_reloads_total") == 1
    assert value(after, "bext_http_request_duration_seconds_count") == 14  # the first scrape
    human = bext_cli(server, "status").stdout
    assert "latency (since start): p50 " in human and "ms, p99 " in human
    assert "waf: inspected " in human and ", blocked 1," in human
    assert "connections open: HTTP/1.1 " in human and "reloads 1" in human
