"""The static handler through the real pipeline (normalisation, routing), on real files."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from static_support import body, close, collected_static, handle, header, pipeline

import bext.static.handler as static_handler_module
from bext.http.date import format_http_date as http_date

STATIC = '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
MTIME = 1_700_000_000  # a fixed, whole-second modification time


def write(path: Path, data: bytes | str, mtime: float | None = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """app_dir with a Django-style staticfiles/ folder (the default root of /static/**)."""
    root = tmp_path / "staticfiles"
    write(root / "css" / "a.css", "body { color: red }\n")
    write(root / "js" / "app.js", "console.log('hi');\n")
    write(root / "img" / "logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    write(root / "data" / "ten.txt", "0123456789")
    write(root / "docs" / "index.html", "<h1>docs</h1>")
    write(root / "empty.txt", b"")
    write(tmp_path / "secret.txt", "TOP-SECRET-CONTENT")
    return tmp_path


# -- URL -> file ------------------------------------------------------------------------


def test_prefix_is_stripped_and_type_set(site: Path) -> None:
    pipe = pipeline(site)
    r = handle(pipe, "/static/css/a.css")
    assert r.status == 200 and body(r) == b"body { color: red }\n"
    assert header(r, "content-type") == "text/css; charset=utf-8"
    assert header(r, "accept-ranges") == "bytes"
    assert header(r, "x-content-type-options") == "nosniff"
    assert header(r, "vary") is None and header(r, "content-encoding") is None
    assert header(handle(pipe, "/static/js/app.js"), "content-type") == (
        "text/javascript; charset=utf-8"
    )
    assert header(handle(pipe, "/static/img/logo.png"), "content-type") == "image/png"
    assert body(handle(pipe, "/static/empty.txt")) == b""


def test_media_root_and_explicit_roots(tmp_path: Path) -> None:
    write(tmp_path / "media" / "up" / "photo.jpg", b"JPEG")
    write(tmp_path / "public" / "favicon.ico", b"ICO")
    write(tmp_path / "public" / "robots.txt", b"User-agent: *")
    write(tmp_path / "build" / "x" / "y.js", b"y")
    routes = (
        '[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
        '[[route_rules]]\npattern = "/favicon.ico"\nrender = "static"\nroot = "public"\n'
        '[[route_rules]]\npattern = "/robots.txt"\nrender = "static"\nroot = "public"\n'
        '[[route_rules]]\npattern = "/**"\nrender = "static"\nroot = "build"\n'
    )
    pipe = pipeline(tmp_path, routes)
    assert body(handle(pipe, "/media/up/photo.jpg")) == b"JPEG"
    assert body(handle(pipe, "/favicon.ico")) == b"ICO"
    assert body(handle(pipe, "/robots.txt")) == b"User-agent: *"
    assert body(handle(pipe, "/x/y.js")) == b"y"
    assert handle(pipe, "/media/missing.jpg").status == 404


def test_percent_encoded_names_and_unicode(site: Path) -> None:
    write(site / "staticfiles" / "a b" / "é.txt", "unicode")
    pipe = pipeline(site)
    assert body(handle(pipe, "/static/a%20b/%C3%A9.txt")) == b"unicode"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_only_get_and_head(site: Path, method: str) -> None:
    r = handle(pipeline(site), "/static/css/a.css", method=method)
    assert r.status == 405 and header(r, "allow") == "GET, HEAD"


def test_head_has_get_headers(site: Path) -> None:
    pipe = pipeline(site)
    get = handle(pipe, "/static/css/a.css")
    head = handle(pipe, "/static/css/a.css", method="HEAD")
    assert head.status == 200 and head.headers == get.headers
    assert head.content_length == get.content_length == 20


# -- what is never served -------------------------------------------------------------------


def test_dotfiles_and_odd_names_are_404(site: Path) -> None:
    root = site / "staticfiles"
    write(root / ".env", "SECRET=1")
    write(root / ".git" / "config", "[core]")
    write(root / ".well-known" / "x.txt", "x")
    write(root / "css" / ".a.css.swp", "swap")
    write(root / "a\\b.txt", "backslash")
    write(root / "a%2Fb.txt", "encoded slash")
    pipe = pipeline(site)
    for target in [
        "/static/.env",
        "/static/.git/config",
        "/static/.well-known/x.txt",
        "/static/css/.a.css.swp",
        "/static/%2eenv",
        "/static/a\\b.txt",
        "/static/a%5Cb.txt",
        "/static/a%2Fb.txt",
        "/static/a%252Fb.txt",
    ]:
        r = handle(pipe, target)
        assert r.status in (400, 404), target
        assert b"SECRET" not in r.body and b"core" not in r.body


def test_directories(site: Path) -> None:
    pipe = pipeline(site)
    for target in ["/static", "/static/", "/static/docs", "/static/docs/", "/static/css/"]:
        assert handle(pipe, target).status == 404, target
    # A file is not a directory.
    assert handle(pipe, "/static/css/a.css/").status == 404


def test_index_and_slash_redirect(site: Path) -> None:
    pipe = pipeline(site, STATIC + 'index = "index.html"\n')
    r = handle(pipe, "/static/docs/")
    assert r.status == 200 and body(r) == b"<h1>docs</h1>"
    assert header(r, "content-type") == "text/html; charset=utf-8"
    r = handle(pipe, "/static/docs?a=1&b=%20")
    assert r.status == 301 and header(r, "location") == "/static/docs/?a=1&b=%20"
    r = handle(pipe, "/static")
    assert r.status == 301 and header(r, "location") == "/static/"
    write(site / "staticfiles" / "ü dir" / "index.html", "u")
    r = handle(pipe, "/static/%C3%BC%20dir")
    assert r.status == 301 and header(r, "location") == "/static/%C3%BC%20dir/"
    assert body(handle(pipe, "/static/%C3%BC%20dir/")) == b"u"
    assert handle(pipe, "/static/css/").status == 404  # no index.html there


def test_non_regular_files_are_404(site: Path) -> None:
    os.mkfifo(site / "staticfiles" / "pipe.txt")
    r = handle(pipeline(site), "/static/pipe.txt")  # must not block on the FIFO
    assert r.status == 404


def test_symlinks(site: Path) -> None:
    root = site / "staticfiles"
    (root / "inside.css").symlink_to(root / "css" / "a.css")
    (root / "outside.txt").symlink_to(site / "secret.txt")
    (root / "up").symlink_to(site)
    (root / "loop").symlink_to(root / "loop")
    pipe = pipeline(site)
    assert body(handle(pipe, "/static/inside.css")) == b"body { color: red }\n"
    for target in ["/static/outside.txt", "/static/up/secret.txt", "/static/loop"]:
        r = handle(pipe, target)
        assert r.status == 404 and b"TOP-SECRET" not in r.body
    allowed = pipeline(site, STATIC + "allow_symlinks = true\n")
    assert body(handle(allowed, "/static/outside.txt")) == b"TOP-SECRET-CONTENT"


def test_symlink_swapped_in_after_caching_is_refused(site: Path) -> None:
    pipe = pipeline(site)
    assert handle(pipe, "/static/data/ten.txt").status == 200
    target = site / "staticfiles" / "data" / "ten.txt"
    target.unlink()
    target.symlink_to(site / "secret.txt")
    r = handle(pipe, "/static/data/ten.txt")
    assert r.status == 404 and b"TOP-SECRET" not in r.body


def test_errors_reveal_no_paths(site: Path) -> None:
    pipe = pipeline(site)
    for target in ["/static/nope.css", "/static/.env", "/static/docs", "/static/a%2Fb"]:
        for accept in ("text/html", "*/*"):
            r = handle(pipe, target, {"accept": accept})
            assert str(site).encode() not in r.body
            assert b"staticfiles" not in r.body


# -- validators ------------------------------------------------------------------------------


def test_validators(site: Path) -> None:
    pipe = pipeline(site)
    path = site / "staticfiles" / "css" / "a.css"
    st = path.stat()
    r = handle(pipe, "/static/css/a.css")
    etag = header(r, "etag")
    assert etag == f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    assert header(r, "last-modified") == http_date(MTIME).decode()
    assert header(r, "cache-control") == "no-cache"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"if-none-match": "ETAG"}, 304),
        ({"if-none-match": "W/ETAG"}, 304),
        ({"if-none-match": '"x", ETAG'}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": '"x"'}, 200),
        ({"if-none-match": "garbage"}, 200),
        ({"if-modified-since": "LASTMOD"}, 304),
        ({"if-modified-since": http_date(MTIME + 60).decode()}, 304),
        ({"if-modified-since": "Tuesday, 14-Nov-23 22:13:20 GMT"}, 304),
        ({"if-modified-since": http_date(MTIME - 1).decode()}, 200),
        ({"if-modified-since": "not a date"}, 200),
        # If-None-Match takes precedence over If-Modified-Since.
        ({"if-none-match": '"x"', "if-modified-since": "LASTMOD"}, 200),
        ({"if-none-match": "ETAG", "if-modified-since": http_date(MTIME - 1).decode()}, 304),
        ({"if-match": "ETAG"}, 200),
        ({"if-match": "*"}, 200),
        ({"if-match": '"x"'}, 412),
        ({"if-match": "W/ETAG"}, 412),
        ({"if-unmodified-since": http_date(MTIME).decode()}, 200),
        ({"if-unmodified-since": http_date(MTIME - 1).decode()}, 412),
        ({"if-match": "ETAG", "if-unmodified-since": http_date(MTIME - 1).decode()}, 200),
    ],
)
def test_conditional_requests(site: Path, fields: dict[str, str], status: int) -> None:
    pipe = pipeline(site, STATIC + 'headers = { "x-frame-options" = "DENY" }\n')
    first = handle(pipe, "/static/css/a.css")
    etag, lastmod = header(first, "etag"), header(first, "last-modified")
    assert etag and lastmod
    sent = {k: v.replace("ETAG", etag).replace("LASTMOD", lastmod) for k, v in fields.items()}
    for method in ("GET", "HEAD"):
        r = handle(pipe, "/static/css/a.css", sent, method)
        assert r.status == status, (sent, method)
        if status == 304:
            assert r.body == b"" and r.file is None and r.stream is None
            assert header(r, "etag") == etag and header(r, "cache-control") == "no-cache"
            assert header(r, "x-frame-options") == "DENY"
            assert header(r, "content-type") is None
        close(r)


def test_repeated_conditional_fields(site: Path) -> None:
    pipe = pipeline(site)
    etag = header(handle(pipe, "/static/css/a.css"), "etag")
    assert etag
    fields = [(b"if-none-match", b'"x"'), (b"if-none-match", etag.encode())]
    assert handle(pipe, "/static/css/a.css", fields).status == 304


# -- ranges --------------------------------------------------------------------------------------

RANGE_URL = "/static/data/ten.txt"  # "0123456789"


@pytest.mark.parametrize(
    ("value", "content_range", "data"),
    [
        ("bytes=0-3", "bytes 0-3/10", b"0123"),
        ("bytes=-3", "bytes 7-9/10", b"789"),
        ("bytes=5-", "bytes 5-9/10", b"56789"),
        ("bytes=0-0", "bytes 0-0/10", b"0"),
        ("bytes=8-100", "bytes 8-9/10", b"89"),
        ("bytes=0-", "bytes 0-9/10", b"0123456789"),
        ("bytes=0-4,3-6", "bytes 0-6/10", b"0123456"),  # overlapping: merged into one
    ],
)
def test_single_range(site: Path, value: str, content_range: str, data: bytes) -> None:
    r = handle(pipeline(site), RANGE_URL, {"range": value})
    assert r.status == 206 and header(r, "content-range") == content_range
    assert body(r) == data and r.content_length == len(data)
    assert header(r, "content-type") == "text/plain; charset=utf-8"


def parse_multipart(response_body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    match = re.fullmatch(r"multipart/byteranges; boundary=([0-9a-f]+)", content_type)
    assert match, content_type
    boundary = match.group(1).encode()
    assert response_body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = []
    for raw in response_body.split(b"--" + boundary)[1:-1]:
        head, _, data = raw.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n") if line)
        assert data.endswith(b"\r\n")
        parts.append((fields["Content-Type"], fields["Content-Range"], data[:-2]))
    return parts


@pytest.mark.parametrize("max_cached", ["256KB", "4"])  # from memory, and streamed from disk
def test_multiple_ranges(site: Path, max_cached: str) -> None:
    pipe = pipeline(site, extra=f'[static]\nmax_cached_file = "{max_cached}"\n')
    r = handle(pipe, RANGE_URL, {"range": "bytes=0-0,5-6, -2"})
    assert r.status == 206 and header(r, "content-range") is None
    content_type = header(r, "content-type")
    assert content_type
    data = body(r)
    assert len(data) == r.content_length
    assert parse_multipart(data, content_type) == [
        ("text/plain; charset=utf-8", "bytes 0-0/10", b"0"),
        ("text/plain; charset=utf-8", "bytes 5-6/10", b"56"),
        ("text/plain; charset=utf-8", "bytes 8-9/10", b"89"),
    ]
    # The boundary is random per response.
    again = handle(pipe, RANGE_URL, {"range": "bytes=0-0,5-6"})
    assert header(again, "content-type") != content_type
    close(again)


def test_overlapping_multiple_ranges_are_coalesced(site: Path) -> None:
    r = handle(pipeline(site), RANGE_URL, {"range": "bytes=0-0,5-9,-2"})
    content_type = header(r, "content-type")
    assert content_type
    assert parse_multipart(body(r), content_type) == [
        ("text/plain; charset=utf-8", "bytes 0-0/10", b"0"),
        ("text/plain; charset=utf-8", "bytes 5-9/10", b"56789"),
    ]
    abuse = handle(pipeline(site), RANGE_URL, {"range": "bytes=" + ",".join(["0-"] * 16)})
    assert abuse.status == 206 and body(abuse) == b"0123456789"


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("bytes=10-", 416),
        ("bytes=10-20,30-", 416),
        ("bytes=-0", 416),
        ("bytes=5-4", 200),  # malformed: ignored
        ("bytes=x-y", 200),
        ("lines=0-1", 200),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(17)), 200),  # too many: ignored
    ],
)
def test_unsatisfiable_and_ignored_ranges(site: Path, value: str, status: int) -> None:
    r = handle(pipeline(site), RANGE_URL, {"range": value})
    assert r.status == status
    if status == 416:
        assert header(r, "content-range") == "bytes */10"
        assert b"0123456789" not in r.body
    else:
        assert body(r) == b"0123456789"


def test_range_is_ignored_for_head_and_empty_files(site: Path) -> None:
    pipe = pipeline(site)
    r = handle(pipe, RANGE_URL, {"range": "bytes=0-1"}, "HEAD")
    assert r.status == 200 and r.content_length == 10
    r = handle(pipe, "/static/empty.txt", {"range": "bytes=0-1"})
    assert r.status == 200 and body(r) == b""


def test_if_range(site: Path) -> None:
    pipe = pipeline(site)
    first = handle(pipe, RANGE_URL)
    etag, lastmod = header(first, "etag"), header(first, "last-modified")
    assert etag and lastmod
    cases = [
        (etag, 206),
        ("W/" + etag, 200),  # weak tags never match If-Range
        ('"stale"', 200),
        (lastmod, 206),
        (http_date(MTIME - 10).decode(), 200),
        ("garbage", 200),
    ]
    for value, status in cases:
        r = handle(pipe, RANGE_URL, {"range": "bytes=0-1", "if-range": value})
        assert r.status == status, value
        assert body(r) == (b"01" if status == 206 else b"0123456789")


# -- precompressed variants ---------------------------------------------------------------------


@pytest.fixture
def variants(site: Path) -> Path:
    root = site / "staticfiles" / "js"
    write(root / "lib.js", "IDENTITY-CONTENT")
    write(root / "lib.js.br", "BROTLI-CONTENT", MTIME + 1)
    write(root / "lib.js.gz", "GZIP-CONTENT", MTIME + 1)
    return site


@pytest.mark.parametrize(
    ("accept_encoding", "coding", "data"),
    [
        ("gzip, deflate, br, zstd", "br", b"BROTLI-CONTENT"),
        ("gzip, deflate", "gzip", b"GZIP-CONTENT"),
        ("x-gzip", "gzip", b"GZIP-CONTENT"),
        ("br;q=0, gzip", "gzip", b"GZIP-CONTENT"),
        ("gzip;q=1, br;q=0.5", "gzip", b"GZIP-CONTENT"),
        ("br;q=0, gzip;q=0", None, b"IDENTITY-CONTENT"),
        ("identity", None, b"IDENTITY-CONTENT"),
        ("*", "br", b"BROTLI-CONTENT"),
        (None, None, b"IDENTITY-CONTENT"),
    ],
)
def test_variant_selection(
    variants: Path, accept_encoding: str | None, coding: str | None, data: bytes
) -> None:
    pipe = pipeline(variants)
    fields = {} if accept_encoding is None else {"accept-encoding": accept_encoding}
    r = handle(pipe, "/static/js/lib.js", fields)
    assert r.status == 200 and body(r) == data
    assert header(r, "content-encoding") == coding
    assert header(r, "vary") == "Accept-Encoding"
    assert header(r, "content-type") == "text/javascript; charset=utf-8"
    etag = header(r, "etag")
    assert etag
    suffix = {"br": '-br"', "gzip": '-gz"', None: ""}[coding]
    assert etag.endswith(suffix) if suffix else not etag.endswith(('-br"', '-gz"'))
    # The variant's own ETag revalidates it, and its 304 carries Vary.
    r304 = handle(pipe, "/static/js/lib.js", {**fields, "if-none-match": etag})
    assert r304.status == 304 and header(r304, "vary") == "Accept-Encoding"
    assert header(r304, "etag") == etag


def test_variants_win_over_on_the_fly_compression(variants: Path) -> None:
    write(variants / "staticfiles" / "js" / "plain.js", "x = 1;\n" * 500)
    pipe = pipeline(variants, compression=True)
    r = handle(pipe, "/static/js/lib.js", {"accept-encoding": "gzip, br"})
    assert body(r) == b"BROTLI-CONTENT" and header(r, "content-encoding") == "br"
    identity_tag = header(handle(pipe, "/static/js/plain.js"), "etag")
    r = handle(pipe, "/static/js/plain.js", {"accept-encoding": "gzip"})
    assert header(r, "content-encoding") == "gzip" and header(r, "vary") == "Accept-Encoding"
    # The compressed response's weakened ETag still revalidates (weak comparison).
    assert header(r, "etag") == f"W/{identity_tag}"
    r = handle(
        pipe,
        "/static/js/plain.js",
        {"accept-encoding": "gzip", "if-none-match": f"W/{identity_tag}"},
    )
    assert r.status == 304


def test_variant_etags_differ(variants: Path) -> None:
    pipe = pipeline(variants)
    tags = {
        header(handle(pipe, "/static/js/lib.js", {"accept-encoding": ae}), "etag")
        for ae in ("br", "gzip", "identity")
    }
    assert len(tags) == 3
    # The identity ETag does not validate the brotli representation.
    identity_tag = header(handle(pipe, "/static/js/lib.js"), "etag")
    assert identity_tag
    r = handle(pipe, "/static/js/lib.js", {"accept-encoding": "br", "if-none-match": identity_tag})
    assert r.status == 200 and body(r) == b"BROTLI-CONTENT"


def test_ranges_apply_to_the_variant(variants: Path) -> None:
    r = handle(
        pipeline(variants), "/static/js/lib.js", {"accept-encoding": "br", "range": "bytes=0-5"}
    )
    assert r.status == 206 and body(r) == b"BROTLI"
    assert header(r, "content-range") == "bytes 0-5/14"
    assert header(r, "content-encoding") == "br" and header(r, "vary") == "Accept-Encoding"
    r = handle(
        pipeline(variants), "/static/js/lib.js", {"accept-encoding": "br", "range": "bytes=99-"}
    )
    assert r.status == 416 and header(r, "content-range") == "bytes */14"
    assert header(r, "vary") == "Accept-Encoding"


def test_stale_variant_is_ignored(site: Path) -> None:
    root = site / "staticfiles" / "js"
    write(root / "old.js", "NEW-SOURCE", MTIME)
    write(root / "old.js.br", "OLD-BROTLI", MTIME - 100)  # made from an older source
    r = handle(pipeline(site), "/static/js/old.js", {"accept-encoding": "br"})
    assert body(r) == b"NEW-SOURCE" and header(r, "content-encoding") is None
    assert header(r, "vary") is None


def test_variant_files_requested_directly(variants: Path) -> None:
    r = handle(pipeline(variants), "/static/js/lib.js.br", {"accept-encoding": "br"})
    assert body(r) == b"BROTLI-CONTENT"
    assert header(r, "content-encoding") is None
    assert header(r, "content-type") == "application/x-brotli"


def test_variant_written_later_is_picked_up(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = site / "staticfiles" / "js"
    pipe = pipeline(site)
    assert body(handle(pipe, "/static/js/app.js", {"accept-encoding": "br"})) == (
        b"console.log('hi');\n"
    )
    write(root / "app.js.br", "BR", MTIME + 5)
    monkeypatch.setattr(static_handler_module, "VARIANT_RECHECK", 0.0)
    r = handle(pipe, "/static/js/app.js", {"accept-encoding": "br"})
    assert body(r) == b"BR" and header(r, "vary") == "Accept-Encoding"
    (root / "app.js.br").unlink()
    r = handle(pipe, "/static/js/app.js", {"accept-encoding": "br"})
    assert body(r) == b"console.log('hi');\n" and header(r, "content-encoding") is None


def test_variants_are_rechecked_at_most_once_a_second(
    variants: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = pipeline(variants)
    handle(pipe, "/static/js/lib.js", {"accept-encoding": "br"})
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(path)
        return real_stat(path)

    monkeypatch.setattr(static_handler_module.os, "stat", counting_stat)
    for _ in range(20):
        handle(pipe, "/static/js/lib.js", {"accept-encoding": "br"})
    assert len(stats) == 20  # one stat per request, of the file itself
    assert all(path.endswith("lib.js") for path in stats)


# -- Cache-Control and rule headers ---------------------------------------------------------------


def test_cache_control_policy(site: Path) -> None:
    root = site / "staticfiles"
    write(root / "css" / "a.0123456789ab.css", "hashed")
    write(root / "assets" / "index-BxJ3kZ2a.js", "vite")
    pipe = pipeline(site)
    immutable = "public, max-age=31536000, immutable"
    assert header(handle(pipe, "/static/css/a.0123456789ab.css"), "cache-control") == immutable
    assert header(handle(pipe, "/static/assets/index-BxJ3kZ2a.js"), "cache-control") == immutable
    assert header(handle(pipe, "/static/css/a.css"), "cache-control") == "no-cache"
    pipe = pipeline(site, extra='[static]\nmax_age = "10m"\n')
    assert header(handle(pipe, "/static/css/a.css"), "cache-control") == "public, max-age=600"
    r = handle(pipe, "/static/css/a.0123456789ab.css")
    assert header(r, "cache-control") == immutable and header(r, "etag")


def test_rule_headers_win(site: Path) -> None:
    routes = (
        STATIC + 'headers = { "cache-control" = "public, max-age=31536000, immutable", '
        '"x-frame-options" = "DENY", "Content-Type" = "text/x-custom" }\n'
    )
    pipe = pipeline(site, routes)
    r = handle(pipe, "/static/css/a.css")
    assert header(r, "cache-control") == "public, max-age=31536000, immutable"
    assert header(r, "x-frame-options") == "DENY"
    assert header(r, "content-type") == "text/x-custom"  # exactly one, the rule's
    r = handle(pipe, "/static/data/ten.txt", {"range": "bytes=0-0,2-2"})
    assert (header(r, "content-type") or "").startswith("multipart/byteranges")
    assert b"Content-Type: text/x-custom" in body(r)
    # Not on errors: an immutable 404 would stick in browsers for a year.
    missing = handle(pipe, "/static/nope.css")
    assert missing.status == 404 and header(missing, "cache-control") is None
    assert header(missing, "x-frame-options") is None


# -- freshness -------------------------------------------------------------------------------------


def test_changes_on_disk_show_at_once(site: Path) -> None:
    pipe = pipeline(site)
    path = site / "staticfiles" / "css" / "a.css"
    first = handle(pipe, "/static/css/a.css")
    assert body(first) == b"body { color: red }\n"
    # Changed content and size.
    write(path, "body { color: blue; }\n", MTIME + 1)
    r = handle(pipe, "/static/css/a.css")
    assert body(r) == b"body { color: blue; }\n" and header(r, "etag") != header(first, "etag")
    # Same size, same mtime (as `cp -p` or `rsync -t` leave it): ctime still tells.
    time.sleep(0.02)  # past the filesystem's timestamp granularity
    write(path, "body { color: gray; }\n", MTIME + 1)
    assert body(handle(pipe, "/static/css/a.css")) == b"body { color: gray; }\n"
    # Replaced by rename (a new inode), as collectstatic and deploy tools do.
    tmp = site / "staticfiles" / "css" / "tmp"
    write(tmp, "body { color: teal; }\n", MTIME + 1)
    tmp.rename(path)
    assert body(handle(pipe, "/static/css/a.css")) == b"body { color: teal; }\n"
    # Deleted, then created again.
    path.unlink()
    assert handle(pipe, "/static/css/a.css").status == 404
    write(path, "back", MTIME + 2)
    assert body(handle(pipe, "/static/css/a.css")) == b"back"
    # A file that did not exist at first.
    assert handle(pipe, "/static/css/new.css").status == 404
    write(site / "staticfiles" / "css" / "new.css", "new")
    assert body(handle(pipe, "/static/css/new.css")) == b"new"


def test_large_file_changes_show_at_once(site: Path) -> None:
    pipe = pipeline(site, extra='[static]\nmax_cached_file = "1KB"\n')
    path = write(site / "staticfiles" / "big.bin", b"a" * 5000)
    assert body(handle(pipe, "/static/big.bin")) == b"a" * 5000
    write(path, b"b" * 6000, MTIME + 1)
    assert body(handle(pipe, "/static/big.bin")) == b"b" * 6000
    time.sleep(0.02)
    write(path, b"c" * 6000, MTIME + 1)  # same size and mtime
    assert body(handle(pipe, "/static/big.bin")) == b"c" * 6000


# -- memory cache and large files -------------------------------------------------------------------


def test_small_files_are_prebuilt_and_shared(site: Path) -> None:
    pipe = pipeline(site)
    first = handle(pipe, "/static/css/a.css")
    assert first.file is None and first.body
    assert handle(pipe, "/static/css/a.css") is first  # the very same Response object
    assert handle(pipe, "/static/css/a.css", method="HEAD") is first
    assert handle(pipe, "/static/css/a.css", {"accept-encoding": "gzip"}) is first


def test_large_files_are_sent_from_a_descriptor(site: Path) -> None:
    pipe = pipeline(site, extra='[static]\nmax_cached_file = "1KB"\n')
    data = os.urandom(300_000)
    write(site / "staticfiles" / "video.mp4", data)
    r = handle(pipe, "/static/video.mp4")
    assert r.file is not None and r.body == b"" and r.content_length == len(data)
    assert header(r, "content-type") == "video/mp4"
    assert body(r) == data
    head = handle(pipe, "/static/video.mp4", method="HEAD")
    assert head.content_length == len(data)
    close(head)
    part = handle(pipe, "/static/video.mp4", {"range": "bytes=1000-1999"})
    assert part.file is not None and part.file.offset == 1000 and part.file.count == 1000
    assert body(part) == data[1000:2000]


def test_memory_cache_is_bounded_by_bytes(site: Path) -> None:
    pipe = pipeline(site, extra='[static]\nmemory_cache = "1KB"\nmax_cached_file = "1KB"\n')
    names = [f"f{i}.txt" for i in range(10)]
    for i, name in enumerate(names):
        write(site / "staticfiles" / name, bytes([65 + i]) * 400)
    for _ in range(2):
        for i, name in enumerate(names):
            assert body(handle(pipe, f"/static/{name}")) == bytes([65 + i]) * 400
    route = pipe.router.match(None, "/static/x")
    assert route is not None
    handler = route.handler
    assert isinstance(handler, static_handler_module.StaticHandler)
    assert handler.contents.used <= 1024 and len(handler.contents) == 2


def test_metadata_cache_is_bounded_by_count(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_handler_module, "ENTRY_LIMIT", 5)
    pipe = pipeline(site)
    for i in range(20):
        write(site / "staticfiles" / f"m{i}.txt", str(i))
        assert body(handle(pipe, f"/static/m{i}.txt")) == str(i).encode()
    route = pipe.router.match(None, "/static/x")
    assert route is not None and isinstance(route.handler, static_handler_module.StaticHandler)
    assert len(route.handler.entries) == 5
    assert route.handler.contents.used == sum(len(str(i)) for i in range(15, 20))


def test_file_larger_than_the_whole_cache(site: Path) -> None:
    pipe = pipeline(site, extra='[static]\nmemory_cache = "100"\nmax_cached_file = "1KB"\n')
    write(site / "staticfiles" / "mid.txt", b"m" * 500)
    for _ in range(2):
        r = handle(pipe, "/static/mid.txt")
        assert r.file is not None and body(r) == b"m" * 500


# -- the real thing: collectstatic output of the demo project ---------------------------------------


@pytest.fixture(scope="module")
def collected() -> Path:
    return collected_static()


def test_collectstatic_output(collected: Path) -> None:
    pipe = pipeline(collected.parent)
    manifest = json.loads((collected / "staticfiles.json").read_text())["paths"]
    hashed = manifest["admin/css/base.css"]
    assert re.fullmatch(r"admin/css/base\.[0-9a-f]{12}\.css", hashed)
    plain = handle(pipe, "/static/admin/css/base.css")
    immutable = handle(pipe, "/static/" + hashed)
    assert plain.status == immutable.status == 200
    assert body(plain) == (collected / "admin/css/base.css").read_bytes()
    # The manifest storage rewrote url(...) references inside the hashed copy.
    assert body(immutable) == (collected / hashed).read_bytes() != body(plain)
    assert header(immutable, "cache-control") == "public, max-age=31536000, immutable"
    assert header(plain, "cache-control") == "no-cache"
    assert header(plain, "content-type") == "text/css; charset=utf-8"
    js = manifest["admin/js/core.js"]
    r = handle(pipe, "/static/" + js)
    assert header(r, "content-type") == "text/javascript; charset=utf-8"
    assert body(r) == (collected / js).read_bytes()
    svg = next(name for name in manifest.values() if name.endswith(".svg"))
    assert header(handle(pipe, "/static/" + svg), "content-type") == "image/svg+xml; charset=utf-8"
    r = handle(pipe, "/static/staticfiles.json")
    assert header(r, "content-type") == "application/json; charset=utf-8"
    license_name = manifest["admin/img/LICENSE"]
    assert header(handle(pipe, "/static/" + license_name), "cache-control") == (
        "public, max-age=31536000, immutable"
    )
    etag = header(immutable, "etag")
    assert etag
    assert handle(pipe, "/static/" + hashed, {"if-none-match": etag}).status == 304


def test_seed_config_with_collectstatic(collected: Path) -> None:
    """The integration guide's rules, as written, over real collectstatic output."""
    routes = (
        '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
        'headers = { "cache-control" = "public, max-age=31536000, immutable" }\n'
        '[[route_rules]]\npattern = "/media/**"\nrender = "static"\n'
    )
    pipe = pipeline(collected.parent, routes)
    r = handle(pipe, "/static/admin/css/base.css")
    assert r.status == 200
    assert [v for k, v in r.headers if k.lower() == b"cache-control"] == [
        b"public, max-age=31536000, immutable"
    ]
    assert handle(pipe, "/media/anything.png").status == 404  # no MEDIA_ROOT yet


def test_the_fast_path_costs_one_stat(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = pipeline(site)
    handle(pipe, "/static/css/a.css")
    calls: list[str] = []
    for name in ("stat", "open", "lstat", "fstat", "read", "pread"):
        real = getattr(os, name)

        def spy(*args: object, _real: object = real, _name: str = name) -> object:
            calls.append(_name)
            return _real(*args)  # type: ignore[operator]

        monkeypatch.setattr(static_handler_module.os, name, spy)
    started = time.perf_counter()
    for _ in range(100):
        handle(pipe, "/static/css/a.css", {"accept-encoding": "gzip, br", "accept": "*/*"})
    assert calls == ["stat"] * 100
    assert time.perf_counter() - started < 1.0
