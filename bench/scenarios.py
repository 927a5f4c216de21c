"""Benchmark scenarios: what nginx and bext are each configured to serve, and what to ask.

A scenario is pure data. The runner (:mod:`run`) merges the selected scenarios into one
nginx ``server`` block and one bext configuration, starts both servers once, checks every
scenario answers identically on both, then loads each one with wrk.

Adding a scenario never touches the runner:

* ``nginx_server`` is pasted inside the shared ``server { listen ...; }`` block,
  ``nginx_http`` at ``http`` level (``upstream`` blocks, for instance) and ``nginx_main``
  at the top of ``nginx.conf`` (``load_module``); identical ``nginx_main`` lines of several
  scenarios are written once.
* ``bext_routes`` is TOML appended after the shared ``[server]`` and ``[log]`` tables
  (``[[route_rules]]`` entries, upstream tables, ...); ``bext_shared`` is TOML several
  scenarios may need alike (the ``[waf]`` table): identical texts are written once, after
  all the routes.
* ``method`` and ``body`` make the verification request and every wrk request (through a
  generated wrk Lua script) e.g. a form POST; ``checks`` are further requests every server
  must answer with a given status before anything is measured (an attack that a WAF must
  refuse, and a server without the WAF must let through).
* ``files`` are written below the scenario's own directory before the servers start
  (document roots for static-file scenarios).
* ``fixtures`` are context managers entered before the servers start and left after they
  stop: a proxy scenario starts its backend in one (see :mod:`backends`) and yields its
  port, so nginx and bext proxy to the same backend process.
* ``max_connections`` caps wrk's ``-c`` for a scenario whose backend saturates with few
  connections (more would only queue in front of it).
* ``targets`` name further servers to compare bext with, besides nginx: target fixtures
  (see :mod:`backends`) that start a server answering the same path, e.g. ``"whitenoise"``
  (Gunicorn + Django + WhiteNoise serving the same files). The runner verifies and loads
  them in the same alternation as nginx and bext (nginx, bext, whitenoise, nginx, ...) and
  reports bext/target as an extra ratio column.
* ``cache_hit`` makes a scenario a cache scenario: the verification request is also the
  warm-up request that fills each server's cache, and further requests must then carry the
  given header with the given token (``X-Cache-Status: HIT`` from nginx, ``Cache-Status:
  bext;hit;...`` from bext) before anything is measured.
* ``backend_log`` names a file with one line per request the backend answered (Gunicorn's
  access log, say): the runner counts its new lines during every measured round, so a
  cache scenario shows how many requests got past each server's cache.

Placeholders ``{{name}}`` in ``nginx_main``, ``nginx_server``, ``nginx_http``,
``bext_routes``, ``bext_shared``, ``path`` and ``lua_script`` are replaced before use:
``{{root}}`` is the scenario's directory (absolute path) and every key a fixture yields is
available too (a target fixture gets them as ``FixtureContext.values``). Any placeholder
left unresolved is an error, so a typo fails loudly instead of producing a silently
different config.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import quote, quote_plus

from backends import (
    Fixture,
    TargetFixture,
    bext_target,
    gunicorn_cached_page,
    gunicorn_django,
    gunicorn_whitenoise,
    modsecurity_rules,
    nginx_backend,
)


@dataclass(frozen=True, slots=True)
class Check:
    """A request every server of a scenario gets once before the measurements (with the
    scenario's method and header fields), and the status each must answer."""

    name: str
    path: str
    """Request path and query (no placeholders)."""
    expected: Mapping[str, int]
    """Server name (``nginx``, ``bext``, a target's) -> status; every server needs one."""
    body: bytes | None = None
    """The request body; None: the scenario's ``body``."""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    path: str
    """Request path (and query) wrk and the verification request use; must be unique."""
    nginx_server: str
    bext_routes: str
    nginx_http: str = ""
    expected_status: int = 200
    expected_body_length: int | None = None
    """When set, both servers must return exactly this many body bytes."""
    request_headers: Mapping[str, str] = field(default_factory=dict)
    """Sent by the verification request and, as ``-H``, by wrk."""
    wrk_args: tuple[str, ...] = ()
    lua_script: str | None = None
    """Contents of a wrk Lua script (``-s``), for scenarios needing custom requests."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Relative path -> content, written below ``{{root}}`` before the servers start."""
    fixtures: tuple[Fixture, ...] = ()
    """Given a :class:`backends.FixtureContext`, context managers yielding placeholder values."""
    max_connections: int | None = None
    """Upper bound for wrk's ``-c`` in this scenario (``--connections`` above it is lowered)."""
    targets: Mapping[str, TargetFixture] = field(default_factory=dict)
    """Extra comparison targets by name (not ``nginx``/``bext``), measured alongside them."""
    cache_hit: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Server name -> (response header, token): after the verification request has filled
    the caches, that server's responses must be hits, i.e. the header's last list member
    must have the token among its ``;``-separated parts (``("Cache-Status", "hit")``)."""
    backend_log: str | None = None
    """A file (placeholders allowed) the backend writes one line per request to; its new
    lines are counted during each measured round (``backend requests`` in the report)."""
    nginx_main: str = ""
    """Main-context nginx directives (``load_module``); identical lines are written once."""
    bext_shared: str = ""
    """bext TOML tables scenarios share (``[waf]``); identical texts are written once."""
    method: str = "GET"
    body: bytes | None = None
    """With ``method``: the request body of the verification request and of wrk's requests
    (the runner writes a wrk Lua script setting ``wrk.method``/``wrk.body``)."""
    checks: tuple[Check, ...] = ()
    """More requests, each server's expected status, sent after the verification request."""

    def __post_init__(self) -> None:
        reserved = {"nginx", "bext"} & set(self.targets)
        if reserved:
            raise ValueError(f"scenario {self.name!r}: target name(s) {reserved} are reserved")


BROWSER_HEADERS: dict[str, str] = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.9,fr;q=0.8",
    "Referer": "http://127.0.0.1/index.html",
    "Cookie": "session=6f1e3c2a9b7d4e5f8a0b1c2d3e4f5a6b; theme=dark; _ga=GA1.1.1234567.1700000000",
    "Cache-Control": "no-cache",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "same-origin",
    "Upgrade-Insecure-Requests": "1",
}
"""Ten request header fields like a browser's (no Accept-Encoding: bodies stay comparable)."""


def respond_scenario(
    name: str,
    path: str,
    description: str,
    size: int,
    request_headers: Mapping[str, str] | None = None,
) -> Scenario:
    """A fixed ``size``-byte text/plain body: nginx ``return 200``, bext ``respond``."""
    body = "x" * size
    nginx = f'location = {path} {{\n    default_type text/plain;\n    return 200 "{body}";\n}}\n'
    bext = (
        f'[[route_rules]]\npattern = "{path}"\n'
        f'respond = {{ status = 200, body = "{body}", content_type = "text/plain" }}\n'
    )
    return Scenario(
        name=name,
        description=description,
        path=path,
        nginx_server=nginx,
        bext_routes=bext,
        expected_status=200,
        expected_body_length=size,
        request_headers=dict(request_headers or {}),
    )


NGINX_PROXY_HEADERS = """\
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host $host;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-Host $host;
proxy_set_header X-Real-IP $remote_addr;
"""
"""What nginx sends upstream, matched to bext's proxy (bext/proxy/headers.py): HTTP/1.1
keep-alive, the client's Host, X-Forwarded-For/-Proto/-Host and X-Real-IP."""


def proxy_scenario(
    name: str,
    description: str,
    path: str,
    nginx_location: str,
    bext_pattern: str,
    backend: Fixture,
    expected_body_length: int | None = None,
    max_connections: int | None = None,
) -> Scenario:
    """nginx and bext as reverse proxies in front of one shared backend (``backend``).

    Both keep up to 64 idle connections per worker to the backend and reuse them without a
    request limit (bext's pool has none; nginx gets ``keepalive_requests 1000000``). The
    connect/read timeouts are bext's recommended 2 s / 30 s; they never fire here.
    """
    upstream = "bench_" + name.replace("-", "_")
    nginx_http = (
        f"upstream {upstream} {{\n"
        "    server 127.0.0.1:{{backend_port}};\n"
        "    keepalive 64;\n"
        "    keepalive_requests 1000000;\n"
        "}\n"
    )
    nginx = (
        f"location {nginx_location} {{\n"
        f"    proxy_pass http://{upstream};\n"
        + "".join(f"    {line}\n" for line in NGINX_PROXY_HEADERS.splitlines())
        + "}\n"
    )
    bext = (
        f"[upstreams.{upstream}]\n"
        "keepalive = 64\n"
        "connect_timeout_ms = 2000\n"
        "read_timeout_ms = 30000\n\n"
        f"[[upstreams.{upstream}.servers]]\n"
        'url = "http://127.0.0.1:{{backend_port}}"\n\n'
        f'[[route_rules]]\npattern = "{bext_pattern}"\nproxy = "{upstream}"\n'
        # [waf] enabled (the waf-* scenarios) inspects every proxy rule without a waf key.
        "waf = false\n"
    )
    return Scenario(
        name=name,
        description=description,
        path=path,
        nginx_server=nginx,
        nginx_http=nginx_http,
        bext_routes=bext,
        expected_status=200,
        expected_body_length=expected_body_length,
        fixtures=(backend,),
        max_connections=max_connections,
    )


CACHE_TTL = 60
"""The origin's ``Cache-Control: public, max-age=60`` in the cache-hit scenario: a run of
``2 x warmup + 2 x rounds x duration`` seconds must stay below it, or entries expire."""


def cache_scenario(name: str, description: str, path: str) -> Scenario:
    """nginx (``proxy_cache``) and bext (the response cache) in front of one Gunicorn that
    serves the demo's template page with ``Cache-Control: public, max-age=60`` at ``path``
    (:func:`backends.gunicorn_cached_page`).

    The proxying is :func:`proxy_scenario`'s (same upstream settings and forwarded header
    fields), plus on each side its cache with default settings:

    * nginx: ``proxy_cache_path {{root}}/nginx-cache keys_zone=NAME:1m`` (default key
      ``$scheme$proxy_host$request_uri``, no ``proxy_cache_valid``: the origin's max-age
      decides), ``proxy_cache NAME`` and ``add_header X-Cache-Status
      $upstream_cache_status`` so that a hit can be told from a miss.
    * bext: ``[cache] path = "{{root}}/bext-cache"`` (the LMDB store) and ``cache = true``
      on the proxy rule: the same as ``[cache] enabled = true`` for this rule only, so the
      other proxy scenarios of a run stay uncached. Hits carry ``Cache-Status: bext;hit``.

    The verification request fills both caches (one miss each); more requests must be hits
    before anything is measured, and the backend's access log counts the requests that
    still reach it during the measured rounds (expected: 0).
    """
    base = proxy_scenario(
        name,
        description,
        path,
        f"= {path}",
        path,
        gunicorn_cached_page(path, CACHE_TTL),
    )
    zone = "bench_" + name.replace("-", "_")
    nginx_http = (
        f"proxy_cache_path {{{{root}}}}/nginx-cache levels=1:2 keys_zone={zone}:1m;\n"
        + base.nginx_http
    )
    nginx_server = base.nginx_server.replace(
        "    proxy_pass ",
        f"    proxy_cache {zone};\n"
        "    add_header X-Cache-Status $upstream_cache_status;\n"
        "    proxy_pass ",
    )
    bext = base.bext_routes + "cache = true\n\n[cache]\n" + 'path = "{{root}}/bext-cache"\n'
    return replace(
        base,
        nginx_http=nginx_http,
        nginx_server=nginx_server,
        bext_routes=bext,
        cache_hit={"nginx": ("X-Cache-Status", "HIT"), "bext": ("Cache-Status", "hit")},
        backend_log="{{backend_access_log}}",
    )


WAF_HEADERS: dict[str, str] = {"Host": "www.example.com", **BROWSER_HEADERS}
"""The WAF scenarios' request header fields: a named Host (with wrk's ``127.0.0.1:PORT``
every request matches CRS rule 920350, "Host header is a numeric IP address", score 3:
below the threshold, but both engines would report that match on every request, which
a real site's requests do not cost them) and :data:`BROWSER_HEADERS`. Benign requests
then match no CRS rule at all (``bext waf test`` shows none)."""

WAF_PARANOIA = 1
WAF_ANOMALY_THRESHOLD = 5
"""bext's ``[waf]`` defaults (CRS paranoia level 1, inbound anomaly threshold 5), written
out in bext's config and given to nginx's ModSecurity through the same generated setup."""
WAF_ATTACK = "1' OR '1'='1"
"""The SQL injection each WAF scenario's check sends: CRS must score it past 5 (403)."""
WAF_NO_WAF = "bext-nowaf"
"""The comparison target: a second bext, same settings and backend, no ``[waf]``."""

FORM_TEXT = (
    "Hello, I would like to know whether the blue running shoes from your spring catalogue "
    "are still available in size 42, and how long delivery to Lyon usually takes. "
    "Could you also tell me if the colour in the photos matches the real product? "
    "Thank you very much for your help, and have a nice day! "
)
"""Benign prose for the form POST (no apostrophes: plain text only, nothing code-like)."""


def form_body(size: int, text: str = FORM_TEXT) -> bytes:
    """An ``application/x-www-form-urlencoded`` contact form of exactly ``size`` bytes:
    ``name``, ``email`` and a ``message`` of ``text`` repeated (``+`` for spaces, ``%XX``
    for punctuation) cut to fit."""
    head = f"name=Alice+Martin&email={quote_plus('alice.martin@example.com')}&message="
    parts = [head]
    length = len(head)
    index = 0
    while length < size:
        encoded = quote_plus(text[index % len(text)])
        index += 1
        if length + len(encoded) > size:
            encoded = "." * (size - length)  # an escape that would not fit: pad
        parts.append(encoded)
        length += len(encoded)
    return "".join(parts).encode("ascii")


def waf_scenario(
    name: str,
    description: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    request_headers: Mapping[str, str] | None = None,
) -> Scenario:
    """:func:`proxy_scenario` in front of the fast backend (1-worker nginx, 1 KiB), with
    ModSecurity v3 and the OWASP CRS on both proxies, and bext without a WAF beside them.

    * nginx: ``load_module`` of the ModSecurity connector and, in the location,
      ``modsecurity on; modsecurity_rules_file {{root}}/modsecurity.conf;``: bext's own
      engine directives and CRS setup, then the same CRS files
      (:func:`backends.modsecurity_rules`).
    * bext: ``[waf] enabled = true`` (paranoia 1, threshold 5, Debian's CRS) and ``waf =
      true`` on this proxy rule (every other scenario's proxy rule says ``waf = false``).
    * ``bext-nowaf``: a second bext (:func:`backends.bext_target`), same settings, the same
      upstream and rule, no ``[waf]`` at all: bext/bext-nowaf is what the WAF costs bext.

    The checks: the benign request gets 200 from all three (the verification request), and
    ``WAF_ATTACK`` (in the query of a GET, in the form's ``message`` field of a POST) gets
    403 from nginx and bext and 200 from bext-nowaf.
    """
    base = proxy_scenario(
        name,
        description,
        path,
        f"/{name}/",
        f"/{name}/**",
        nginx_backend(1024),
        expected_body_length=1024,
    )
    nginx_server = base.nginx_server.replace(
        "    proxy_pass ",
        "    modsecurity on;\n    modsecurity_rules_file {{modsecurity_rules}};\n    proxy_pass ",
    )
    bare = path.split("?", 1)[0]
    if body is None:
        attack = Check("attack in the query", f"{bare}?id={quote(WAF_ATTACK, safe='')}", {})
    else:
        attack_body = form_body(len(body), WAF_ATTACK + " ")
        attack = Check("attack in the form body", path, {}, attack_body)
    expected = {"nginx": 403, "bext": 403, WAF_NO_WAF: 200}
    return replace(
        base,
        nginx_main="load_module {{modsecurity_module}};\n",
        nginx_server=nginx_server,
        bext_routes=base.bext_routes.replace("waf = false\n", "waf = true\n"),
        bext_shared=(
            f"[waf]\nenabled = true\nparanoia = {WAF_PARANOIA}\n"
            f"anomaly_threshold = {WAF_ANOMALY_THRESHOLD}\n"
        ),
        request_headers=dict(request_headers or {}),
        method=method,
        body=body,
        fixtures=(*base.fixtures, modsecurity_rules(WAF_PARANOIA, WAF_ANOMALY_THRESHOLD)),
        targets={WAF_NO_WAF: bext_target(base.bext_routes)},
        checks=(replace(attack, expected=expected),),
    )


STATIC_DOCROOT = "docroot"
"""Below the scenario directory: the one document root nginx, bext and WhiteNoise share."""


def static_scenario(name: str, size: int, description: str) -> Scenario:
    """One ``size``-byte file, served by nginx, bext and Gunicorn + Django + WhiteNoise.

    The file is ``{{root}}/docroot/NAME/SIZE.bin`` (URL ``/NAME/SIZE.bin``): pseudo-random
    bytes (fixed seed, so every run serves the same content), ``application/octet-stream``
    for all three servers. Neither bext's on-the-fly compression (octet-stream is not a
    compressible type) nor WhiteNoise's precompressed variants (none exist) can apply, and
    wrk sends no Accept-Encoding anyway, so every server sends the file's exact bytes.

    * nginx: ``location /NAME/`` with ``root {{root}}/docroot``, tuned as a fair static
      server: ``sendfile on; tcp_nopush on; open_file_cache max=1000;`` (the default
      configuration has ``sendfile`` off and no open file cache).
    * bext: ``pattern = "/NAME/**"``, ``render = "static"``, ``root =
      "{{root}}/docroot/NAME"`` with the default ``[static]`` settings: files up to 256 KiB
      from the memory cache, larger ones with ``os.sendfile``.
    * ``whitenoise``: see :func:`backends.gunicorn_whitenoise`.
    """
    file_name = f"{size // 1024}k.bin" if size % 1024 == 0 else f"{size}.bin"
    content = random.Random(f"bext-bench-{size}").randbytes(size)
    nginx = (
        f"location /{name}/ {{\n"
        f"    root {{{{root}}}}/{STATIC_DOCROOT};\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    open_file_cache max=1000;\n"
        "}\n"
    )
    bext = (
        f'[[route_rules]]\npattern = "/{name}/**"\nrender = "static"\n'
        f'root = "{{{{root}}}}/{STATIC_DOCROOT}/{name}"\n'
    )
    return Scenario(
        name=name,
        description=description,
        path=f"/{name}/{file_name}",
        nginx_server=nginx,
        bext_routes=bext,
        expected_status=200,
        expected_body_length=size,
        files={f"{STATIC_DOCROOT}/{name}/{file_name}": content},
        targets={"whitenoise": gunicorn_whitenoise(STATIC_DOCROOT)},
    )


def uses_modsecurity(scenario: Scenario) -> bool:
    """Whether nginx loads its ModSecurity module for ``scenario`` (the ``waf-*`` ones)."""
    return "{{modsecurity_module}}" in scenario.nginx_main


def _registry(*scenarios: Scenario) -> dict[str, Scenario]:
    registry: dict[str, Scenario] = {}
    paths: set[str] = set()
    for scenario in scenarios:
        if scenario.name in registry:
            raise ValueError(f"duplicate scenario name {scenario.name!r}")
        if scenario.path in paths:
            raise ValueError(f"scenario {scenario.name!r} reuses path {scenario.path!r}")
        registry[scenario.name] = scenario
        paths.add(scenario.path)
    return registry


SCENARIOS: dict[str, Scenario] = _registry(
    respond_scenario(
        "respond-1k",
        "/bench",
        "fixed 1 KiB text/plain response from config; wrk's minimal request (Host only)",
        1024,
    ),
    respond_scenario(
        "respond-1k-headers",
        "/bench-headers",
        "as respond-1k, but every request carries 10 more browser-like header fields",
        1024,
        request_headers=BROWSER_HEADERS,
    ),
    proxy_scenario(
        "proxy-fast",
        "reverse proxy to a fast backend (a separate 1-worker nginx answering a fixed 1 KiB "
        "text/plain body), kept-alive upstream connections; measures the proxy path itself",
        "/proxy-fast/1k",
        "/proxy-fast/",
        "/proxy-fast/**",
        nginx_backend(1024),
        expected_body_length=1024,
    ),
    proxy_scenario(
        "proxy-django",
        "reverse proxy to Gunicorn (2 workers x 2 threads) serving the demo Django app; "
        "/health answers 16 B of JSON from the first middleware (no DB); 16 connections",
        "/health",
        "= /health",
        "/health",
        gunicorn_django(),
        expected_body_length=len(b'{"status": "ok"}'),
        max_connections=16,
    ),
    proxy_scenario(
        "proxy-django-page",
        "as proxy-django, but the template page / (full middleware stack, template "
        "rendering, 1,963 B of HTML); 16 connections",
        "/",
        "= /",
        "/",
        gunicorn_django(collectstatic=True),
        max_connections=16,
    ),
    cache_scenario(
        "cache-hit",
        "the template page of proxy-django-page, sent by Django with Cache-Control: public, "
        "max-age=60 and answered from each server's cache (nginx proxy_cache, bext [cache] "
        "with its LMDB store) after one warm-up request each; 64 connections",
        "/cache-hit",
    ),
    waf_scenario(
        "waf-get",
        "proxy-fast's backend behind ModSecurity v3 + OWASP CRS 3.3 (paranoia 1): nginx with "
        "its ModSecurity module, bext with [waf]; a benign GET with a 2-argument query, "
        "Host www.example.com and 10 browser-like header fields; also bext without the WAF "
        "(bext-nowaf)",
        "/waf-get/1k?page=2&q=blue+shoes",
        request_headers=WAF_HEADERS,
    ),
    waf_scenario(
        "waf-post",
        "as waf-get, a benign 1 KiB application/x-www-form-urlencoded POST (a contact form: "
        "name, email, message) that both WAFs read and inspect",
        "/waf-post/1k",
        method="POST",
        body=form_body(1024),
        request_headers={
            **WAF_HEADERS,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ),
    static_scenario(
        "static-1k",
        1024,
        "a 1 KiB file (random bytes, .bin): bext from its memory cache, nginx with "
        "sendfile + open_file_cache; also Gunicorn + Django + WhiteNoise",
    ),
    static_scenario(
        "static-20k",
        20 * 1024,
        "as static-1k, a 20 KiB file (bext: memory cache)",
    ),
    static_scenario(
        "static-500k",
        500 * 1024,
        "as static-1k, a 500 KiB file (bext: os.sendfile, above the 256 KiB cache limit)",
    ),
)
"""Every known scenario by name, in the order the runner measures them by default."""


def iter_selected(names: list[str] | None) -> Iterator[Scenario]:
    """The scenarios named (in registry order), or all of them; unknown names raise."""
    if not names:
        yield from SCENARIOS.values()
        return
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        known = ", ".join(SCENARIOS)
        raise KeyError(f"unknown scenario(s) {', '.join(unknown)}; known: {known}")
    for name, scenario in SCENARIOS.items():
        if name in names:
            yield scenario
