"""Issue 14, item 3: the loader turns any TOML document into a Config or a clean ConfigError.

A config is input the master acts on while it serves (``bext reload``), so nothing in it may
raise anything but :class:`ConfigError`: a ``ValueError`` from a NUL byte in a path used to
pass ``bext check`` with a traceback and take the whole master down on reload. Every
path-valued key refuses NUL and control characters with its key path; property-based tests
feed the loader arbitrary documents and mutations of a rich valid one, and ``bext check``
whole (in-process) must answer 0 or 78 without a traceback.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import math
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bext.cli import main
from bext.config import Config, ConfigError, parse_config

RICH = """
[server]
port = 3000
host = ["127.0.0.1", "::1"]
app_dir = "app"
workers = 2
http1_engine = "h11"
graceful_timeout = "10s"
max_body_size = "10MB"
trusted_proxies = ["10.0.0.0/8"]
pidfile = "run/bext.pid"
control_socket = "run/bext.sock"
reject_encoded_slash = false
underscores_in_headers = false

[server.tls]
port = 3443
cert = "tls/site.pem"
key = "tls/site.key"
http3 = true
hsts = "365d"

[[server.tls.certificates]]
hosts = ["shop.example.org", "*.shop.example.org"]
cert = "tls/shop.pem"
key = "tls/shop.key"

[server.http2]
max_concurrent_streams = 64

[server.http3]
retry = false

[upstreams.django]
keepalive = 8
[[upstreams.django.servers]]
url = "http://127.0.0.1:8000"
weight = 2
[upstreams.django.health]
enabled = true
path = "/health"
expect_status = [200, 299]

[upstreams.unixapp]
servers = ["unix:run/gunicorn.sock"]

[[route_rules]]
pattern = "/static/**"
render = "static"
root = "staticfiles"
headers = { "x-frame-options" = "DENY" }

[[route_rules]]
pattern = "/old/**"
redirect = { to = "https://example.com{path}?{query}", status = 301 }

[[route_rules]]
pattern = "/private/**"
respond = { status = 403, body = "no" }

[[route_rules]]
pattern = "/sock/**"
proxy = "unixapp"

[[route_rules]]
pattern = "/**"
host = "example.com"
proxy = "django"

[static]
max_age = "1h"

[compression]
types = ["text/*"]

[log]
access = "logs/access.log"
access_format = "json"
error = "logs/error.log"
level = "debug"

[admin]
token = "0123456789abcdef0123"
"""

PATH_KEYS: list[tuple[str, tuple[str | int, ...], str]] = [
    ("server.app_dir", ("server", "app_dir"), "{}"),
    ("server.pidfile", ("server", "pidfile"), "{}"),
    ("server.control_socket", ("server", "control_socket"), "{}"),
    ("server.tls.cert", ("server", "tls", "cert"), "{}"),
    ("server.tls.key", ("server", "tls", "key"), "{}"),
    ("server.tls.certificates[0].cert", ("server", "tls", "certificates", 0, "cert"), "{}"),
    ("server.tls.certificates[0].key", ("server", "tls", "certificates", 0, "key"), "{}"),
    ("route_rules[0].root", ("route_rules", 0, "root"), "{}"),
    ("log.access", ("log", "access"), "{}"),
    ("log.error", ("log", "error"), "{}"),
    ("upstreams.unixapp.servers[0]", ("upstreams", "unixapp", "servers", 0), "unix:{}"),
]


def rich() -> dict[str, Any]:
    return tomllib.loads(RICH)


def put(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def test_rich_config_loads(tmp_path: Path) -> None:
    config = parse_config(rich(), base_dir=tmp_path)
    assert config.server.control_socket == tmp_path / "run/bext.sock"
    assert config.upstreams[1].servers[0].unix_path == tmp_path / "run/gunicorn.sock"


@pytest.mark.parametrize(("key", "path", "form"), PATH_KEYS, ids=[k[0] for k in PATH_KEYS])
@pytest.mark.parametrize(
    "text", ["a\0b", "\0", "~\0/x", "logs/\x1b[31mred", "a\nb", "a\x7f", "a\x85b"]
)
def test_path_keys_refuse_nul_and_control_characters(
    tmp_path: Path, key: str, path: tuple[str | int, ...], form: str, text: str
) -> None:
    doc = rich()
    put(doc, path, form.format(text))
    with pytest.raises(ConfigError) as info:
        parse_config(doc, base_dir=tmp_path)
    why = "NUL" if "\0" in text else "control character"
    assert [p for p in info.value.problems if p.startswith(key + ": ") and why in p]
    assert "\0" not in str(info.value) and "\x1b" not in str(info.value)  # shown escaped


@pytest.mark.parametrize(("key", "path", "form"), PATH_KEYS, ids=[k[0] for k in PATH_KEYS])
def test_tilde_of_an_unknown_user_is_a_clean_error(
    tmp_path: Path, key: str, path: tuple[str | int, ...], form: str
) -> None:
    """pathlib raises RuntimeError for "~nosuchuser": the loader used to let it through."""
    doc = rich()
    put(doc, path, form.format("~nosuchuser-bext/x"))
    with pytest.raises(ConfigError) as info:
        parse_config(doc, base_dir=tmp_path)
    assert [p for p in info.value.problems if p.startswith(key + ": cannot expand")]


# -- property-based ----------------------------------------------------------------------

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SECTIONS = ["server", "upstreams", "route_rules", "log", "static", "compression", "cache",
            "waf", "admin", "framework", "tls", "http2", "http3", "health", "servers"]  # fmt: skip
KEYS = [*SECTIONS, "port", "host", "app_dir", "workers", "pidfile", "control_socket", "cert",
        "key", "root", "pattern", "proxy", "render", "respond", "redirect", "url", "path",
        "access", "error", "hsts", "certificates", "hosts", "headers", "to", "status", "body",
        "token", "types", "max_age", "weight", "keepalive", "expect_status", "index"]  # fmt: skip
NASTY_TEXT = ["", "\0", "a\0b", "~", "~\0", "~nouser/x", "/", "..", "\x1b", "\x85", "é", "🙂",
              "unix:", "unix:/a\0b", "http://", "http://[::1", "http://h:99999", "*", "**",
              "/**", "auto", "internal", "1e309", "-1", "9" * 40, "365d", "0s", "1KB",
              "{path}", "{", "static", "django", "stdout", "off", "\ud7ff"]  # fmt: skip

BAD_PATHS = ["\0", "a\0b", "~\0", "~nobody-x/y", "a\x1bb", "\x7f", "a\nb", "a\x9b"]

scalars = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31, 2**63 - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
    st.dates(),
    st.times(),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(st.characters(codec="utf-8"), max_size=8))
documents = st.dictionaries(
    keys,
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=20,
    ),
    max_size=6,
)


def load(doc: dict[str, Any], base: Path) -> Config | None:
    """Load ``doc`` through TOML text, as ``bext`` would: a Config, or None if refused."""
    text = tomli_w.dumps(doc)
    try:
        return parse_config(tomllib.loads(text), base_dir=base)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None


@FUZZ
@given(doc=documents)
def test_any_document_is_a_config_or_a_clean_error(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as base:
        load(doc, Path(base))


def _leaves(doc: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        found.append((*path, key))
        if isinstance(value, dict | list):
            found += _leaves(value, (*path, key))
    return found


LEAVES = _leaves(rich())


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """The rich config with a few values replaced, keys dropped or unknown keys added."""
    doc = rich()
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):  # a path-valued key: where the crashes were
            _key, where, form = draw(st.sampled_from(PATH_KEYS))
            text = draw(st.one_of(st.sampled_from(NASTY_TEXT), st.sampled_from(BAD_PATHS),
                                  st.text(max_size=6)))  # fmt: skip
            with contextlib.suppress(KeyError, IndexError, TypeError):
                put(doc, where, form.format(text))
            continue
        path = draw(st.sampled_from(LEAVES))
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(
                st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(keys, scalars))
            )
        elif action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(scalars)
    return doc


@FUZZ
@given(doc=mutated())
def test_mutated_configs_are_a_config_or_a_clean_error(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as base:
        load(doc, Path(base))


@settings(FUZZ, max_examples=60)
@given(doc=st.one_of(mutated(), documents))
def test_bext_check_never_prints_a_traceback(doc: dict[str, Any]) -> None:
    """``bext check`` as a whole: TLS files, the pipeline build, the access log too."""
    with tempfile.TemporaryDirectory() as base:
        path = Path(base) / "bext.config.toml"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", "-c", str(path)])
        assert code in (0, 78), err.getvalue()
        assert "Traceback" not in err.getvalue() + out.getvalue()


def test_fuzz_corpus_includes_what_used_to_crash(tmp_path: Path) -> None:
    """The cases the issue's mutation fuzzer found, kept as plain examples."""
    for key, path, form in PATH_KEYS:
        doc = copy.deepcopy(rich())
        put(doc, path, form.format("x\0y"))
        assert load(doc, tmp_path) is None, key
    doc = rich()
    put(doc, ("static", "max_age"), math.inf)
    assert load(doc, tmp_path) is None
