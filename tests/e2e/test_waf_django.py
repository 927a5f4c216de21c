"""bext's WAF (ModSecurity v3 + OWASP CRS 3.3) in front of the real demo Django app.

One Gunicorn (2 workers) serves the module; one bext master (2 workers) with ``[waf]
enabled`` (block mode, paranoia 1, an audit log), a static rule for ``/static/**`` (the
demo's collected static files), ``[cache]`` and the proxy rule stands in front of it. The
detect-mode, exclusion and reload tests start masters of their own (``start_bext``) in
front of the same Gunicorn, so the module master's configuration never changes.

Every URL uses the host name ``localhost``, as a browser would (CRS rule 920350 scores a
numeric Host header).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.django_app import AppServer, DemoSite, django_upstream, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.server import BextProcess, bext_cli, config

Start = Callable[..., BextProcess]

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
BROWSER = {
    "User-Agent": FIREFOX,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
    "Accept-Encoding": "gzip, deflate, br",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "same-origin",
    "Sec-Fetch-User": "?1",
    "Priority": "u=0, i",
}
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
STATIC_FILE = "/static/admin/css/base.css"
MiB = 1024 * 1024


def waf_section(audit_log: Path, extra: str = "", mode: str = "block") -> str:
    return f"""
[waf]
enabled = true
mode = "{mode}"
paranoia = 1
audit_log = "{audit_log}"
{extra}
"""


def routes(app_port: int, static_root: Path) -> str:
    return f"""
{django_upstream(app_port)}

[[route_rules]]
pattern = "/static/**"
render = "static"
root = "{static_root}"

[[route_rules]]
pattern = "/**"
proxy = "django"
"""


@dataclass
class Stack:
    bext: BextProcess
    app: AppServer
    site: DemoSite
    app_port: int
    audit_log: Path
    access_log: Path

    @property
    def url(self) -> str:
        """The master's base URL with the host name a browser would use."""
        return f"http://localhost:{self.bext.port}"

    def static_root(self) -> Path:
        return self.site.root / "staticfiles"


@pytest.fixture(scope="module")
def stack(demo_site: DemoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("bext-waf")
    app_port = free_port()
    audit_log = workdir / "waf-audit.jsonl"
    access_log = workdir / "access.log"
    text = (
        config(routes(app_port, demo_site.root / "staticfiles"), workers=2)
        + f'\n[log]\naccess = "{access_log}"\n'
        + f'\n[cache]\nenabled = true\npath = "{workdir / "store"}"\n'
        + waf_section(audit_log)
    )
    bext = BextProcess(workdir, text)
    app: AppServer | None = None
    try:
        bext.start()
        # django-bext purges /products/ through the master's admin endpoint after a save
        site = replace(demo_site, env={**demo_site.env, "BEXT_ADMIN_URL": bext.base_url})
        app = start_gunicorn(site, app_port, workers=2)
        yield Stack(bext, app, site, app_port, audit_log, access_log)
    finally:
        bext.stop()
        if app is not None:
            app.stop()


# -- helpers ---------------------------------------------------------------------------------


def audit_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_entry(path: Path, request_id: str) -> dict[str, Any]:
    found = [entry for entry in audit_entries(path) if entry["id"] == request_id]
    assert len(found) == 1, f"{request_id} in the audit log {len(found)} times"
    return found[0]


def access_line(path: Path, request_id: str, timeout: float = 5.0) -> str:
    """The access log line with the field ``id=<request_id>`` (workers flush once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if f" id={request_id}" in line:
                return line
        assert time.monotonic() < deadline, f"no access log line for {request_id}:\n{text[-2000:]}"
        time.sleep(0.05)


def counters(server: BextProcess) -> dict[str, int]:
    result = bext_cli(server, "status", "--json")
    assert result.returncode == 0, result.stderr
    found: dict[str, int] = json.loads(result.stdout)["counters"]
    return found


def unique() -> str:
    return uuid.uuid4().hex[:12]


def browser(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=BROWSER, timeout=30)


def post_headers(client: httpx.Client, referer: str) -> dict[str, str]:
    """What Firefox adds to a same-origin form submission."""
    origin = str(client.base_url).rstrip("/")
    return {"Origin": origin, "Referer": origin + referer}


class FormFields(HTMLParser):
    """The fields a browser would submit from the form with id ``form_id`` (without its
    submit buttons: the caller names the one it clicks)."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}
        self._textarea: str | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
            return
        if not self.inside or "name" not in a:
            if tag == "option" and self._select is not None and "selected" in a:
                self.fields[self._select] = a.get("value", "")
            return
        kind = a.get("type", "text").lower()
        if tag == "input" and kind not in ("submit", "button", "image", "file", "reset"):
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields[a["name"]] = a.get("value", "on" if kind == "checkbox" else "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields[a["name"]] = ""
        elif tag == "select":
            self._select = a["name"]
            self.fields.setdefault(a["name"], "")

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "textarea":
            if self._textarea is not None and self.fields[self._textarea].startswith("\n"):
                self.fields[self._textarea] = self.fields[self._textarea][1:]  # as HTML does
            self._textarea = None
        elif tag == "select":
            self._select = None


def form_fields(html: str, form_id: str) -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(html)
    assert parser.fields, f"no form #{form_id} in the page:\n{html[:1000]}"
    return parser.fields


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


# -- attacks ---------------------------------------------------------------------------------

ATTACKS: dict[str, dict[str, Any]] = {
    "sqli-query": {"method": "GET", "url": "/", "params": {"id": "1' OR '1'='1"}},
    "xss-query": {"method": "GET", "url": "/",
                  "params": {"q": "<script>alert(document.cookie)</script>"}},
    "traversal-query": {"method": "GET", "url": "/download",
                        "params": {"file": "../../../../etc/passwd"}},
    "command-query": {"method": "GET", "url": "/",
                      "params": {"host": "127.0.0.1;cat /etc/passwd"}},
    "php-query": {"method": "GET", "url": "/",
                  "params": {"page": "php://filter/convert.base64-encode/resource=index.php"}},
    "java-query": {"method": "GET", "url": "/",
                   "params": {"x": 'java.lang.Runtime.getRuntime().exec("id")'}},
    "sqli-form-body": {"method": "POST", "url": "/form/",
                       "data": {"message": "admin' UNION SELECT password FROM auth_user--"}},
    "xss-json-body": {"method": "POST", "url": "/upload",
                      "json": {"name": "<img src=x onerror=alert(1)>"}},
    "xss-header": {"method": "GET", "url": "/",
                   "headers": {"Referer": "http://localhost/?q=<script>alert(1)</script>"}},
    "sqli-cookie": {"method": "GET", "url": "/form/", "headers": {"Cookie": "sessionid=' OR 1=1--"}},
}  # fmt: skip


def send(client: httpx.Client, attack: dict[str, Any]) -> httpx.Response:
    spec = dict(attack)
    return client.request(spec.pop("method"), spec.pop("url"), **spec)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_are_blocked_with_a_request_id_in_the_audit_and_access_logs(
    stack: Stack, name: str
) -> None:
    attack = ATTACKS[name]
    with browser(stack.url) as client:
        r = send(client, attack)
    assert r.status_code == 403, (name, r.status_code, r.text[:300])
    request_id = r.headers.get("x-request-id", "")
    assert REQUEST_ID.match(request_id), r.headers
    assert request_id in r.text
    assert "web application firewall" in r.text

    entry = audit_entry(stack.audit_log, request_id)
    assert entry["action"] == "block" and entry["status"] == 403, entry
    assert entry["method"] == attack["method"]
    assert entry["uri"].split("?")[0] == attack["url"]
    assert entry["client"] == "127.0.0.1" and entry["host"].startswith("localhost")
    assert entry["score"] >= 5 and entry["rules"], entry
    assert all(isinstance(rule["id"], int) and rule["msg"] for rule in entry["rules"])

    line = access_line(stack.access_log, request_id)
    assert f'"{attack["method"]} {attack["url"]}' in line and '" 403 ' in line, line
    assert line.endswith(" waf=BLOCK") and f" id={request_id} " in line, line


# -- no false positives on a normal session --------------------------------------------------


def test_a_browsing_session_of_the_demo_has_no_false_positive(stack: Stack) -> None:
    """Pages, the CSRF form, the admin (login, add and edit a product, search, logout), an
    upload and the product list, as Firefox sends them: nothing blocked, nothing logged."""
    before_audit = audit_entries(stack.audit_log)
    before = counters(stack.bext)
    seen: list[httpx.Response] = []

    def check(r: httpx.Response, status: int) -> httpx.Response:
        seen.append(r)
        assert "firewall" not in r.text[:2000], (r.request.url, r.text[:300])
        assert r.status_code == status, (r.request.method, r.request.url, r.status_code,
                                         r.text[:500])  # fmt: skip
        return r

    name = f"Stoneware mug {unique()}"
    with browser(stack.url) as client:
        check(client.get("/"), 200)
        check(client.get(STATIC_FILE, headers={
            "Accept": "text/css,*/*;q=0.1", "Sec-Fetch-Dest": "style", "Sec-Fetch-Mode": "no-cors",
            "Referer": stack.url + "/"}), 200)  # fmt: skip
        check(client.get("/products/", headers={"Referer": stack.url + "/"}), 200)

        # the message form: GET, then POST with the CSRF token and cookie, then the redirect
        form = check(client.get("/form/", headers={"Referer": stack.url + "/"}), 200)
        assert "csrftoken" in client.cookies
        message = "Loved the blue mug - will it be back in stock soon? Thanks & cheers!"
        r = check(client.post("/form/", headers=post_headers(client, "/form/"), data={
            "csrfmiddlewaretoken": csrf_token(form.text), "message": message}), 302)  # fmt: skip
        assert r.headers["location"] == "/form/?ok=1"
        done = check(client.get("/form/?ok=1", headers={"Referer": stack.url + "/form/"}), 200)
        assert "Thanks &amp; cheers!" in done.text or "Thanks & cheers!" in done.text

        # the admin: login
        r = check(client.get("/admin/"), 302)
        login = check(client.get(r.headers["location"]), 200)
        r = check(client.post("/admin/login/?next=/admin/",
                              headers=post_headers(client, "/admin/login/?next=/admin/"),
                              data=form_fields(login.text, "login-form")
                              | {"username": "admin", "password": "admin"}), 302)  # fmt: skip
        assert r.headers["location"] == "/admin/"
        assert "Site administration" in check(client.get("/admin/"), 200).text

        # add a product ("Save and continue editing"), then edit it ("Save")
        add = check(client.get("/admin/shop/product/add/",
                               headers={"Referer": stack.url + "/admin/"}), 200)  # fmt: skip
        fields = form_fields(add.text, "product_form")
        assert {"csrfmiddlewaretoken", "name", "price", "description"} <= set(fields), fields
        fields |= {"name": name, "price": "14.90", "_continue": "Save and continue editing",
                   "description": "Hand-thrown stoneware, 350 ml (12 oz).\r\n"
                                  "Dishwasher safe; don't put it in the microwave: the rim "
                                  "is glazed with real gold. Made in Stoke-on-Trent, UK."}  # fmt: skip
        r = check(client.post("/admin/shop/product/add/",
                              headers=post_headers(client, "/admin/shop/product/add/"),
                              data=fields), 302)  # fmt: skip
        change_url = r.headers["location"]
        assert re.fullmatch(r"/admin/shop/product/\d+/change/", change_url), change_url
        change = check(client.get(change_url, headers={"Referer": stack.url + change_url}), 200)
        fields = form_fields(change.text, "product_form")
        assert fields["name"] == name and fields["price"] == "14.90", fields
        assert "real gold" in fields["description"]
        fields |= {
            "price": "12.50",
            "_save": "Save",
            "description": fields["description"] + "\r\nNow 15% off -- while stocks last!",
        }
        r = check(client.post(change_url, headers=post_headers(client, change_url),
                              data=fields), 302)  # fmt: skip
        assert r.headers["location"] == "/admin/shop/product/"
        listing = check(client.get("/admin/shop/product/", params={"q": "stoneware mug"},
                                   headers={"Referer": stack.url + change_url}), 200)  # fmt: skip
        assert name in listing.text
        check(client.get("/admin/shop/message/", headers={"Referer": stack.url + "/admin/"}), 200)

        # the shop's product list shows the new price (django-bext purged the cached copy)
        products = check(client.get("/products/", headers={"Referer": stack.url + "/"}), 200)
        assert name in products.text and "12.50" in products.text

        # an upload through the demo's upload view (multipart, as a file input sends it),
        # smaller than body_limit: larger ones are test_a_10_mb_multipart_upload_...
        photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + random.Random(7).randbytes(100 * 1024)
        r = check(client.post("/upload", headers=post_headers(client, "/"),
                              files={"file": ("holiday photo (1).jpg", photo, "image/jpeg")}),
                  200)  # fmt: skip
        assert r.json() == {"size": len(photo), "sha256": hashlib.sha256(photo).hexdigest()}

        # logout (a POST since Django 5)
        page = check(client.get("/admin/"), 200)
        r = check(client.post("/admin/logout/", headers=post_headers(client, "/admin/"),
                              data={"csrfmiddlewaretoken": csrf_token(page.text)}), 200)  # fmt: skip
        assert "Logged out" in r.text

    after = counters(stack.bext)
    new_audit = audit_entries(stack.audit_log)[len(before_audit) :]
    assert new_audit == [], json.dumps(new_audit, indent=1)
    assert after["waf_blocked"] == before["waf_blocked"]
    assert after["waf_detected"] == before["waf_detected"]
    proxied = [r for r in seen if not r.request.url.path.startswith("/static/")]
    # every proxied request of the session was inspected (the static file was not); a
    # /products/ that was a cache hit would not be, so at most two fewer
    inspected = after["waf_inspected"] - before["waf_inspected"]
    assert len(proxied) - 2 <= inspected <= len(proxied), (inspected, len(proxied))


# -- detect mode -----------------------------------------------------------------------------


def test_detect_mode_lets_attacks_through_and_logs_them(
    stack: Stack, start_bext: Start, tmp_path: Path
) -> None:
    audit_log = tmp_path / "detect-audit.jsonl"
    server = start_bext(
        config(routes(stack.app_port, stack.static_root()), workers=2)
        + waf_section(audit_log, mode="detect")
    )
    url = f"http://localhost:{server.port}"
    expected = {
        "sqli-query": 200,  # Django's index ignores the query
        "xss-query": 200,
        "command-query": 200,
        "java-query": 200,
        "xss-json-body": 200,  # /upload hashes any body
        "traversal-query": 200,  # /download ignores "file": 1 MiB of its payload
        "sqli-form-body": 403,  # Django's own CSRF check: no token
    }
    with browser(url) as client:
        for name, status in expected.items():
            r = send(client, ATTACKS[name])
            assert "web application firewall" not in r.text, (name, r.text[:300])
            if name == "sqli-form-body":
                assert "CSRF" in r.text, r.text[:300]  # Django's 403, not bext's
            assert r.status_code == status, (name, r.status_code, r.text[:300])
        r = client.get("/no-such-page/", params={"q": "<script>alert(1)</script>"})
        assert r.status_code == 404 and "web application firewall" not in r.text
    found = counters(server)
    assert found["waf_detected"] == len(expected) + 1, found
    assert found["waf_blocked"] == 0 and found["waf_inspected"] == len(expected) + 1, found

    entries = audit_entries(audit_log)
    assert len(entries) == len(expected) + 1
    assert {entry["action"] for entry in entries} == {"detect"}
    assert all(entry["score"] >= 5 and entry["rules"] for entry in entries), entries
    server.stop()  # flushes the access log
    detected = [line for line in server.stdout().splitlines() if line.endswith(" waf=DETECT")]
    assert len(detected) == len(expected) + 1, server.stdout()[-3000:]
    logged = {line.split(" id=", 1)[1].split(" ", 1)[0] for line in detected}
    assert {entry["id"] for entry in entries} == logged


# -- exclusions ------------------------------------------------------------------------------


def test_an_exclusion_silences_one_rule_on_one_path(
    stack: Stack, start_bext: Start, tmp_path: Path
) -> None:
    # Which rules catch a tautology in a query string? Ask the module's master.
    probe = {"id": "1' OR '1'='1"}
    r = httpx.get(stack.url + "/whoami", params=probe, headers=BROWSER)
    assert r.status_code == 403
    ids = [rule["id"] for rule in audit_entry(stack.audit_log, r.headers["x-request-id"])["rules"]]
    assert len(ids) == 1, f"the probe should be caught by a single rule, not {ids}"
    [rule_id] = ids  # 942100 (libinjection) with CRS 3.3

    audit_log = tmp_path / "excl-audit.jsonl"
    exclusion = f"""
[[waf.exclusions]]
pattern = "/whoami"
rule_ids = [{rule_id}]
"""
    server = start_bext(
        config(routes(stack.app_port, stack.static_root()), workers=2)
        + waf_section(audit_log, exclusion)
    )
    url = f"http://localhost:{server.port}"
    with browser(url) as client:
        passed = client.get("/whoami", params=probe)
        assert passed.status_code == 200 and passed.json()["method"] == "GET", passed.text[:300]
        assert audit_entries(audit_log) == []  # not even scored: the rule did not run
        elsewhere = client.get("/", params=probe)
        assert elsewhere.status_code == 403
        entry = audit_entry(audit_log, elsewhere.headers["x-request-id"])
        assert [rule["id"] for rule in entry["rules"]] == [rule_id]
        # only that rule is off on /whoami: another attack there is still blocked
        xss = client.get("/whoami", params={"q": "<script>alert(document.cookie)</script>"})
        assert xss.status_code == 403
        assert rule_id not in [rule["id"] for rule in
                               audit_entry(audit_log, xss.headers["x-request-id"])["rules"]]  # fmt: skip


# -- what is not inspected -------------------------------------------------------------------


def test_static_files_and_cache_hits_are_not_inspected(stack: Stack) -> None:
    n = 10
    before = counters(stack.bext)["waf_inspected"]
    expected = (stack.static_root() / STATIC_FILE.removeprefix("/static/")).read_bytes()
    for _ in range(n):
        with browser(stack.url) as client:  # fresh connections: both workers
            r = client.get(STATIC_FILE)
            assert r.status_code == 200 and r.content == expected
    assert counters(stack.bext)["waf_inspected"] == before

    target = f"/products/?t={unique()}"
    first = httpx.get(stack.url + target, headers=BROWSER)
    assert first.status_code == 200 and first.headers["cache-control"] == "public, max-age=60"
    assert first.headers["cache-status"].endswith(";stored"), first.headers["cache-status"]
    assert counters(stack.bext)["waf_inspected"] == before + 1
    hits = 0
    for _ in range(n):
        with browser(stack.url) as client:
            r = client.get(target)
            assert r.status_code == 200 and r.text == first.text
            hits += r.headers["cache-status"].startswith("bext;hit")
    assert hits == n
    assert counters(stack.bext)["waf_inspected"] == before + 1


# -- a broken rule set on reload -------------------------------------------------------------

CANARY_RULE = (
    'SecRule ARGS:canary "@streq bext-waf-canary" '
    "\"id:1000001,phase:1,deny,status:403,log,msg:'local canary rule'\"\n"
)
BROKEN_RULE = 'SecRule ARGS "@rx a" "id:1000002,phase:2,deny,nonsense_action"\n'


def test_a_rule_set_with_a_syntax_error_is_refused_on_reload(
    stack: Stack, start_bext: Start, tmp_path: Path
) -> None:
    local = tmp_path / "local-rules.conf"
    local.write_text(CANARY_RULE)
    audit_log = tmp_path / "reload-audit.jsonl"
    server = start_bext(
        config(routes(stack.app_port, stack.static_root()), workers=2)
        + waf_section(audit_log, f'rules = ["{local}"]')
    )
    url = f"http://localhost:{server.port}"

    def still_blocking() -> None:
        with browser(url) as client:
            canary = client.get("/", params={"canary": "bext-waf-canary"})
            assert canary.status_code == 403
            rules = audit_entry(audit_log, canary.headers["x-request-id"])["rules"]
            assert [rule["id"] for rule in rules] == [1000001]
            assert client.get("/", params={"q": "<script>alert(1)</script>"}).status_code == 403
            assert client.get("/").status_code == 200

    still_blocking()
    local.write_text(CANARY_RULE + BROKEN_RULE)
    result = bext_cli(server, "reload")
    assert result.returncode == 78, (result.returncode, result.stdout, result.stderr)
    assert "waf" in result.stderr and str(local) in result.stderr, result.stderr
    assert "nonsense_action" in result.stderr or "Expecting an action" in result.stderr
    server.wait_for_log("reload refused, the running configuration stays")
    assert "Traceback" not in server.stderr()
    still_blocking()
    assert json.loads(bext_cli(server, "status", "--json").stdout)["generation"] == 1


# -- large bodies ----------------------------------------------------------------------------


def test_a_10_mb_upload_is_inspected_up_to_body_limit_and_arrives_intact(stack: Stack) -> None:
    """A 10 MB form body to the demo's upload view (which hashes the raw body): the WAF
    reads its first body_limit (128 KB) bytes, no more; the app gets every byte."""
    before = counters(stack.bext)
    size = 10 * MiB
    attack = b"q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"
    pad = b"pad=" + random.Random(2024).randbytes(size).hex()[:size].encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with browser(stack.url) as client:
        late = pad + b"&" + attack  # past body_limit: not seen
        r = client.post("/upload", content=late, headers=form)
        assert r.status_code == 200, (r.text[:300], audit_of(stack, r))
        assert r.json() == {"size": len(late), "sha256": hashlib.sha256(late).hexdigest()}
        early = attack + b"&" + pad  # within body_limit: blocked
        r = client.post("/upload", content=early, headers=form)
        assert r.status_code == 403, r.text[:300]
        blocked_id = r.headers["x-request-id"]
    after = counters(stack.bext)
    assert after["waf_inspected"] == before["waf_inspected"] + 2
    assert after["waf_blocked"] == before["waf_blocked"] + 1
    assert audit_entry(stack.audit_log, blocked_id)["action"] == "block"
    assert access_line(stack.access_log, blocked_id).endswith(" waf=BLOCK")


def test_a_raw_10_mb_upload_needs_an_exclusion_for_crs_content_type_policy(
    stack: Stack, start_bext: Start, tmp_path: Path
) -> None:
    """CRS 3.3.4's default policy (rule 901162) does not list application/octet-stream, so
    rule 920420 scores 5 and a raw upload to the demo's /upload is blocked: a CRS false
    positive for this view, silenced for /upload only; the body then arrives intact."""
    size = 10 * MiB
    data = random.Random(2026).randbytes(size)
    raw = {"Content-Type": "application/octet-stream"}
    with browser(stack.url) as client:
        r = client.post("/upload", content=data, headers=raw)
    assert r.status_code == 403
    entry = audit_entry(stack.audit_log, r.headers["x-request-id"])
    assert [rule["id"] for rule in entry["rules"]] == [920420], entry

    exclusion = """
[[waf.exclusions]]
pattern = "/upload"
rule_ids = [920420]
"""
    audit_log = tmp_path / "raw-audit.jsonl"
    server = start_bext(
        config(routes(stack.app_port, stack.static_root()), workers=2)
        + waf_section(audit_log, exclusion)
    )
    with browser(f"http://localhost:{server.port}") as client:
        r = client.post("/upload", content=data, headers=raw)
        assert r.status_code == 200, r.text[:300]
        assert r.json() == {"size": size, "sha256": hashlib.sha256(data).hexdigest()}
        # the exclusion is for /upload only, and for that one rule (CRS reads no ARGS in a
        # raw body: an attack in its query string is what it still sees there)
        assert client.post("/", content=b"x", headers=raw).status_code == 403
        xss = {"name": "<script>alert(document.cookie)</script>"}
        assert client.post("/upload", params=xss, content=b"x", headers=raw).status_code == 403
    assert counters(server)["waf_inspected"] == 3
    assert audit_entries(audit_log)[0]["rules"][0]["id"] == 920420


def test_a_10_mb_multipart_upload_passes_the_waf_intact(stack: Stack) -> None:
    """A file input's upload larger than body_limit must reach Django whole.

    Fails with bext as of this test: the WAF hands ModSecurity the body cut at body_limit
    (``SecRequestBodyLimitAction ProcessPartial``), ModSecurity cannot parse a multipart
    body without its final boundary (REQBODY_ERROR "Multipart: Final boundary missing",
    ModSecurity issues #1284, #1471) and bext's own rule 200002 answers 400: every
    multipart upload over 128 KB (the default body_limit) is refused."""
    size = 10 * MiB
    data = random.Random(2025).randbytes(size)
    with browser(stack.url) as client:
        r = client.post("/upload", headers=post_headers(client, "/"),
                        files={"file": ("backup.tar.gz", data, "application/gzip")})  # fmt: skip
    assert r.status_code == 200, (r.status_code, r.text[:300],
                                  audit_of(stack, r))  # fmt: skip
    assert r.json() == {"size": size, "sha256": hashlib.sha256(data).hexdigest()}


def test_a_json_body_larger_than_body_limit_passes_the_waf(stack: Stack) -> None:
    """A 200 KB JSON document (an API client's bulk update) must reach Django whole.

    Fails with bext as of this test, for the multipart upload's reason: cut at body_limit
    the JSON no longer parses, REQBODY_ERROR, rule 200002, 400."""
    document = {"items": [{"sku": f"MUG-{i:05d}", "name": f"Mug {i}", "price": "12.50"}
                          for i in range(3000)]}  # fmt: skip
    body = json.dumps(document).encode()
    assert len(body) > 128 * 1024
    with browser(stack.url) as client:
        r = client.post("/upload", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, (r.status_code, r.text[:300], audit_of(stack, r))
    assert r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def audit_of(stack: Stack, r: httpx.Response) -> dict[str, Any] | None:
    request_id = r.headers.get("x-request-id")
    return audit_entry(stack.audit_log, request_id) if request_id else None
