"""The WAF without sockets: the generated SecLang, the engine on Debian's CRS, the phase.

These use the real engine (PyPI ``libmodsecurity``) and Debian's ``modsecurity-crs``
rules, both installed by the project's own scripts (``make test``).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from bext.config.load import parse_config
from bext.config.schema import WafConfig, WafExclusion
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.waf.engine import RulesError, WafEngine
from bext.waf.phase import WafPhase
from bext.waf.seclang import crs_rule_files, crs_version, engine_rules, glob_regex
from bext.worker.pipeline import BuildError, Pipeline

CRS = Path("/usr/share/modsecurity-crs")
HOST = [("Host", "shop.example"), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("Accept", "text/html")]  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> WafEngine:
    return WafEngine(WafConfig(enabled=True))


def verdict_of(engine: WafEngine, uri: str, method: str = "GET",
               headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> int:  # fmt: skip
    verdict = engine.inspect(method, uri, "1.1", [*HOST, *(headers or [])], body,
                             ("203.0.113.5", 40000), ("127.0.0.1", 443))  # fmt: skip
    return verdict.status


def test_crs_files_are_debians_in_order_without_ip_reputation() -> None:
    files = [path.name for path in crs_rule_files(CRS)]
    assert files == sorted(files) and files[0].startswith("REQUEST-901")
    assert "REQUEST-910-IP-REPUTATION.conf" not in files
    assert crs_version(CRS)[0] >= 3


def test_missing_crs_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install modsecurity-crs"):
        crs_rule_files(tmp_path)


def test_generated_setup_follows_the_config() -> None:
    text = engine_rules(
        WafConfig(mode="detect", paranoia=3, anomaly_threshold=7, body_limit=4096,
                  exclusions=(WafExclusion("/admin/**", (942100,), ("attack-xss",)),)),
        (3, 3, 4),
    )  # fmt: skip
    assert "SecRuleEngine DetectionOnly" in text
    assert "setvar:tx.paranoia_level=3" in text
    assert "setvar:tx.inbound_anomaly_score_threshold=7" in text
    assert "SecRequestBodyLimit 4096" in text and "SecRequestBodyLimitAction ProcessPartial" in text
    assert "setvar:tx.crs_setup_version=334" in text
    assert "SecRemoteRules" not in text and "SecAuditEngine Off" in text
    assert "ctl:ruleRemoveById=942100" in text and "ctl:ruleRemoveByTag=attack-xss" in text


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [("/admin/**", "/admin", True), ("/admin/**", "/admin/x/y", True),
     ("/admin/**", "/administrator", False), ("/a/*/c", "/a/b/c", True),
     ("/a/*/c", "/a/b/d/c", False), ("/x.y", "/xzy", False)],
)  # fmt: skip
def test_exclusion_globs(glob: str, path: str, matches: bool) -> None:
    assert (re.match(glob_regex(glob), path) is not None) is matches


@pytest.mark.parametrize(
    ("uri", "method", "headers", "body"),
    [
        ("/?id=1' OR '1'='1", "GET", [], b""),
        ("/?q=<script>alert(document.cookie)</script>", "GET", [], b""),
        ("/static/../../../../etc/passwd", "GET", [], b""),
        ("/?cmd=;cat /etc/passwd", "GET", [], b""),
        ("/?file=php://filter/convert.base64-encode/resource=index.php", "GET", [], b""),
        ("/", "POST", [("Content-Type", "application/x-www-form-urlencoded")],
         b"user=admin' UNION SELECT password FROM users--"),
        ("/api", "POST", [("Content-Type", "application/json")],
         b'{"name": "<img src=x onerror=alert(1)>"}'),
        ("/", "GET", [("Cookie", "session=' OR 1=1--")], b""),
        ("/?x=java.lang.Runtime.getRuntime().exec(%22id%22)", "GET", [], b""),
        ("/", "GET", [("User-Agent", "sqlmap/1.7")], b""),
    ],
)  # fmt: skip
def test_attacks_are_blocked(
    engine: WafEngine, uri: str, method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    assert verdict_of(engine, uri, method, headers, body) == 403


@pytest.mark.parametrize(
    ("uri", "method", "headers", "body"),
    [
        ("/products/?page=2&sort=price", "GET", [], b""),
        ("/form/", "POST", [("Content-Type", "application/x-www-form-urlencoded")],
         b"csrfmiddlewaretoken=Xy7Qk2m9vB3nR8pL1sT4wE6uZ0aC5dF&message=Hello+there%21"),
        ("/api/items/", "POST", [("Content-Type", "application/json")],
         b'{"name": "Blue mug", "price": "12.50", "tags": ["kitchen", "gift"]}'),
        ("/admin/login/?next=/admin/", "GET", [], b""),
    ],
)  # fmt: skip
def test_ordinary_requests_pass(
    engine: WafEngine, uri: str, method: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    assert verdict_of(engine, uri, method, headers, body) == 0


def test_a_body_that_does_not_parse_is_a_400_unless_it_was_cut(engine: WafEngine) -> None:
    json = [("Content-Type", "application/json")]
    broken = b'{"unterminated": '
    length = [("Content-Length", str(len(broken)))]
    assert verdict_of(engine, "/api", "POST", [*json, *length], broken) == 400
    # The same bytes as the first body_limit bytes of a larger body: cut, not malformed.
    cut = [("Content-Length", str(10 * 1024 * 1024))]
    assert verdict_of(engine, "/api", "POST", [*json, *cut], broken) == 0


def test_the_crs_version_is_the_rules_own() -> None:
    assert crs_version(CRS) == (3, 3, 4)  # Debian 12's; the files' comments name 3.1.0 too


def test_a_rule_set_that_does_not_parse_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "local.conf"
    bad.write_text('SecRule ARGS "@rx a" "id:1234567,phase:2,deny,nonsense_action"\n')
    with pytest.raises(RulesError, match=r"nonsense_action|Expecting an action"):
        WafEngine(WafConfig(enabled=True, rules=(str(bad),)))
    with pytest.raises(FileNotFoundError, match="no such rules file"):
        WafEngine(WafConfig(enabled=True, rules=(str(tmp_path / "absent*.conf"),)))


def request(target: bytes, method: str = "GET") -> Request:
    return Request(method, target, [(b"host", b"shop.example"), (b"accept", b"text/html")],
                   "1.1", "https", "198.51.100.7", 1234, 443, EMPTY_BODY, 0.0)  # fmt: skip


def test_the_phase_blocks_with_an_id_and_writes_the_audit_log(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    phase = WafPhase(WafConfig(enabled=True, audit_log=audit))
    assert phase.check(request(b"/products/?page=2"), b"") is None
    blocked = phase.check(request(b"/?id=1'%20OR%20'1'='1"), b"")
    assert isinstance(blocked, Response) and blocked.status == 403
    request_id = dict(blocked.headers)[b"X-Request-ID"].decode()
    assert request_id.encode() in blocked.body
    [line] = audit.read_text().splitlines()
    entry = json.loads(line)
    assert entry["id"] == request_id and entry["action"] == "block"
    assert entry["client"] == "198.51.100.7" and entry["score"] >= 5
    assert any(rule["id"] == 942100 for rule in entry["rules"])


def test_detect_mode_lets_through_and_logs(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    phase = WafPhase(WafConfig(enabled=True, mode="detect", audit_log=audit))
    probe = request(b"/?id=1'%20OR%20'1'='1")
    assert phase.check(probe, b"") is None
    assert probe.notes.waf == "DETECT"
    assert json.loads(audit.read_text())["action"] == "detect"


def test_an_exclusion_silences_a_rule_on_its_path_only() -> None:
    config = WafConfig(enabled=True, exclusions=(WafExclusion("/search/**", (942100,)),))
    phase = WafPhase(config)
    assert phase.check(request(b"/search/?q=1'%20OR%20'1'='1"), b"") is None
    assert phase.check(request(b"/other/?q=1'%20OR%20'1'='1"), b"") is not None


def test_a_broken_rule_file_is_a_build_error_with_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "local.conf"
    bad.write_text("SecRule ARGS\n")
    text = f"""
[waf]
enabled = true
rules = ["{bad}"]
[upstreams.app]
[[upstreams.app.servers]]
url = "http://127.0.0.1:9"
[[route_rules]]
pattern = "/**"
proxy = "app"
"""
    with pytest.raises(BuildError) as raised:
        Pipeline(parse_config(tomllib.loads(text), base_dir=tmp_path))
    assert raised.value.key == "waf"
    missing = text.replace(f'rules = ["{bad}"]', f'crs = "{tmp_path}"')
    with pytest.raises(BuildError, match="modsecurity-crs"):
        Pipeline(parse_config(tomllib.loads(missing), base_dir=tmp_path))
    assert replace(WafConfig(), enabled=True).crs == CRS
