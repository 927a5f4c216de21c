"""The static server's pure parts: types, URL mapping, validators, ranges, codings, caches."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bext.http.date import format_http_date as http_date
from bext.http.date import parse_http_date
from bext.static.cache_control import IMMUTABLE, cache_control, is_content_addressed
from bext.static.conditional import etag_for, if_range_matches, list_matches
from bext.static.filecache import ContentCache, EntryCache
from bext.static.mime import content_type
from bext.static.precompressed import preference
from bext.static.ranges import MAX_RANGES, parse_range
from bext.static.resolve import Root, url_prefix

# -- Content-Type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("a.htm", "text/html; charset=utf-8"),
        ("base.96c479cedf7a.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("mod.mjs", "text/javascript; charset=utf-8"),
        ("data.json", "application/json; charset=utf-8"),
        ("app.js.map", "application/json; charset=utf-8"),
        ("site.webmanifest", "application/manifest+json; charset=utf-8"),
        ("feed.xml", "application/xml; charset=utf-8"),
        ("logo.svg", "image/svg+xml; charset=utf-8"),
        ("readme.txt", "text/plain; charset=utf-8"),
        ("app.wasm", "application/wasm"),
        ("a.png", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.JPEG", "image/jpeg"),
        ("a.gif", "image/gif"),
        ("a.webp", "image/webp"),
        ("a.avif", "image/avif"),
        ("favicon.ico", "image/vnd.microsoft.icon"),
        ("f.woff", "font/woff"),
        ("f.woff2", "font/woff2"),
        ("f.ttf", "font/ttf"),
        ("f.otf", "font/otf"),
        ("f.eot", "application/vnd.ms-fontobject"),
        ("doc.pdf", "application/pdf"),
        ("v.mp4", "video/mp4"),
        ("v.webm", "video/webm"),
        ("s.mp3", "audio/mpeg"),
        ("s.ogg", "audio/ogg"),
        ("s.wav", "audio/wav"),
        ("a.zip", "application/zip"),
        ("a.tar.gz", "application/gzip"),
        ("a.br", "application/x-brotli"),
        ("LICENSE", "application/octet-stream"),
        ("archive.unknownext", "application/octet-stream"),
        ("dir.d/noext", "application/octet-stream"),
        (".hidden", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type(name) == expected.encode()


# -- URL -> file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("/static/**", "/static"),
        ("/media/**", "/media"),
        ("/assets/v1/**", "/assets/v1"),
        ("/**", ""),
        ("/files/*.css", "/files"),
        ("/a/**/b", "/a"),
        ("/favicon.ico", ""),
        ("/a/robots.txt", "/a"),
    ],
)
def test_url_prefix(pattern: str, prefix: str) -> None:
    assert url_prefix(pattern) == prefix


@pytest.mark.parametrize(
    ("path", "rel"),
    [
        ("/static", ""),
        ("/static/", "/"),
        ("/static/css/a.css", "/css/a.css"),
        ("/static/a b/é.png", "/a b/é.png"),
        ("/static/a..b", "/a..b"),
        ("/static/a./b", "/a./b"),
        ("/static/.env", None),
        ("/static/.git/config", None),
        ("/static/a/.well-known/x", None),
        ("/static/a/../b", None),  # never produced by the normaliser; refused anyway
        ("/static/a%2Fb", None),
        ("/static/a%2fb", None),
        ("/static/a\\b", None),
        ("/static/a\x00b", None),
        ("/static/a\x1fb", None),
        ("/static/a\x7fb", None),
        ("/static//etc/passwd", None),
        ("/staticfoo", None),
        ("/other/x", None),
    ],
)
def test_relative(path: str, rel: str | None) -> None:
    root = Root(Path("/srv/app/staticfiles"), "/static", allow_symlinks=False)
    assert root.relative(path) == rel


def test_file_path_concatenates_never_joins() -> None:
    root = Root(Path("/srv/app/staticfiles/"), "/static", allow_symlinks=False)
    assert root.file_path("/css/a.css") == "/srv/app/staticfiles/css/a.css"
    assert root.file_path("") == "/srv/app/staticfiles"
    assert Root(Path("/"), "", False).file_path("/etc/x") == "/etc/x"


def test_contains_follows_symlinks(tmp_path: Path) -> None:
    root_dir = tmp_path / "root"
    (root_dir / "sub").mkdir(parents=True)
    (root_dir / "sub" / "f.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    (root_dir / "in").symlink_to(root_dir / "sub" / "f.txt")
    (root_dir / "out").symlink_to(tmp_path / "outside.txt")
    (root_dir / "outdir").symlink_to(tmp_path)
    root = Root(root_dir, "", allow_symlinks=False)
    assert root.contains(str(root_dir / "sub" / "f.txt"))
    assert root.contains(str(root_dir / "in"))
    assert not root.contains(str(root_dir / "out"))
    assert not root.contains(str(root_dir / "outdir" / "outside.txt"))
    assert not root.contains(str(root_dir / "missing"))
    assert Root(root_dir, "", allow_symlinks=True).contains(str(root_dir / "out"))


def test_symlinked_root_is_followed_when_it_flips(tmp_path: Path) -> None:
    (tmp_path / "r1").mkdir()
    (tmp_path / "r2").mkdir()
    (tmp_path / "r1" / "a").write_text("1")
    (tmp_path / "r2" / "a").write_text("2")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "r1")
    root = Root(current, "", allow_symlinks=False)
    assert root.contains(str(current / "a"))
    current.unlink()
    current.symlink_to(tmp_path / "r2")  # a deploy flips the link
    assert root.contains(str(current / "a"))


# -- validators ---------------------------------------------------------------------------


def test_etag_and_date_formats() -> None:
    assert etag_for(0x1234, 0x10) == b'"1234-10"'
    assert etag_for(0x1234, 0x10, "-br") == b'"1234-10-br"'
    assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    "value",
    [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
    ],
)
def test_parse_http_date_three_forms(value: bytes) -> None:
    assert parse_http_date(value) == 784111777


@pytest.mark.parametrize(
    "value",
    [b"", b"yesterday", b"Sun, 06 Nov 1994 08:49:37", b"Sun, 06 Foo 1994 08:49:37 GMT",
     b"Sun, 06 Nov 1994 25:49:37 GMT", b"1994-11-06T08:49:37Z", b"Sun, 99 Nov 1994 08:49:37 GMT"],
)  # fmt: skip
def test_parse_http_date_rejects(value: bytes) -> None:
    assert parse_http_date(value) is None


@given(st.integers(min_value=0, max_value=2**35))
def test_http_date_round_trip(seconds: int) -> None:
    assert parse_http_date(http_date(seconds)) == seconds


TAG = b'"5f-10"'


@pytest.mark.parametrize(
    ("value", "weak_match", "strong_match"),
    [
        (TAG, True, True),
        (b"*", True, True),
        (b" * ", True, True),
        (b'W/"5f-10"', True, False),
        (b'"other", "5f-10"', True, True),
        (b'"other",W/"5f-10"', True, False),
        (b'"a,b", "5f-10"', True, True),  # commas inside an opaque tag
        (b'"other"', False, False),
        (b'"5f-10-br"', False, False),
        (b"5f-10", False, False),  # unquoted: malformed
        (b'"5f-10', False, False),
        (b'"x" garbage, "5f-10"', False, False),
        (b"", False, False),
    ],
)
def test_entity_tag_lists(value: bytes, weak_match: bool, strong_match: bool) -> None:
    assert list_matches(value, TAG, weak_compare=True) is weak_match
    assert list_matches(value, TAG, weak_compare=False) is strong_match


def test_if_range() -> None:
    last_modified = http_date(784111777)
    assert if_range_matches(TAG, TAG, last_modified, 784111777)
    assert not if_range_matches(b'W/"5f-10"', TAG, last_modified, 784111777)
    assert not if_range_matches(b'"old"', TAG, last_modified, 784111777)
    assert if_range_matches(last_modified, TAG, last_modified, 784111777)
    assert if_range_matches(b"Sunday, 06-Nov-94 08:49:37 GMT", TAG, last_modified, 784111777)
    assert not if_range_matches(http_date(784111776), TAG, last_modified, 784111777)
    assert not if_range_matches(b"garbage", TAG, last_modified, 784111777)


# -- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=0-99", [(0, 99)]),
        (b"bytes=0-0", [(0, 0)]),
        (b"bytes=-500", [(500, 999)]),
        (b"bytes=-5000", [(0, 999)]),
        (b"bytes=100-", [(100, 999)]),
        (b"bytes=900-5000", [(900, 999)]),
        (b"bytes=0-0,5-9", [(0, 0), (5, 9)]),
        (b"bytes=5-9, 0-0", [(5, 9), (0, 0)]),  # order kept when nothing overlaps
        (b"bytes=0-9,5-14", [(0, 14)]),  # overlap: merged
        (b"bytes=0-,0-,0-", [(0, 999)]),
        (b"bytes=0-9,10-19", [(0, 9), (10, 19)]),  # adjacent, no overlap: kept
        (b"bytes=0-4,3-9,20-29", [(0, 9), (20, 29)]),
        (b"Bytes = 1-2", [(1, 2)]),
        (b"bytes=1-2,,", [(1, 2)]),
        (b"bytes=1000-", []),
        (b"bytes=1000-2000,5000-", []),
        (b"bytes=-0", []),
        (b"bytes=1000-,0-1", [(0, 1)]),
        (b"bytes=99999999999999999999999-", []),
        (b"bytes=0-99999999999999999999999", [(0, 999)]),
        (b"bytes=5-4", None),
        (b"bytes=a-b", None),
        (b"bytes=-", None),
        (b"bytes=1", None),
        (b"bytes=", None),
        (b"bytes=+1-2", None),
        (b"bytes=1 -2", None),
        (b"items=0-1", None),
        (b"0-1", None),
        (b"bytes=\xd9\xa1-2", None),  # non-ASCII digit
        (
            b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES)),
            [(i, i) for i in range(MAX_RANGES)],
        ),
        (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES + 1)), None),
    ],
)
def test_parse_range(value: bytes, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(value, 1000) == expected


def test_parse_range_empty_file_is_ignored() -> None:
    assert parse_range(b"bytes=0-0", 0) is None


@given(st.binary(max_size=60), st.integers(min_value=1, max_value=10**6))
def test_parse_range_never_out_of_bounds(value: bytes, size: int) -> None:
    result = parse_range(b"bytes=" + value, size)
    if result:
        assert len(result) <= MAX_RANGES
        assert all(0 <= first <= last < size for first, last in result)
        assert sum(last - first + 1 for first, last in result) <= size or len(result) > 1


# -- Accept-Encoding ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("identity",)),
        (b"", ("identity",)),
        (b"gzip, deflate, br, zstd", ("br", "gzip", "identity")),
        (b"gzip, deflate", ("gzip", "identity")),
        (b"br", ("br", "identity")),
        (b"gzip;q=1.0, br;q=0.5", ("gzip", "br", "identity")),
        (b"br;q=0, gzip", ("gzip", "identity")),
        (b"br;q=0, gzip;q=0", ("identity",)),
        (b"*", ("br", "gzip", "identity")),
        (b"*;q=0.5, gzip", ("gzip", "br", "identity")),
        (b"*;q=0, gzip", ("gzip", "identity")),
        (b"identity", ("identity",)),
        (b"identity;q=1, br;q=0.5", ("identity", "br")),
        (b"identity;q=0", ("identity",)),  # last resort, never 406
        (b"x-gzip", ("gzip", "identity")),
        (b"GZIP;Q=0.8, BR;Q=0.9", ("br", "gzip", "identity")),
        (b"br;q=2, gzip", ("gzip", "identity")),  # invalid qvalue: element ignored
        (b"br;q=abc, gzip", ("gzip", "identity")),
        (b"br;q=-1", ("identity",)),
        (b"br;q=0.001", ("br", "identity")),
        (b",, br ,", ("br", "identity")),
    ],
)
def test_accept_encoding_preference(value: bytes | None, expected: tuple[str, ...]) -> None:
    assert preference(value) == expected


# -- Cache-Control ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "base.96c479cedf7a.css",  # Django ManifestStaticFilesStorage
        "LICENSE.2c54f4e1ca1c",
        "jquery.min.abcdef123456.js",
        "app.js.0123456789ab.map",
        "main.3f2a9c1d.js",  # webpack [contenthash:8]
        "main.3f2a9c1d.chunk.js",
        "vendor-0123abcd4567ef89aa00.js",
        "index-BxJ3kZ2a.js",  # Vite / Rollup
        "index-BxJ3kZ2a.js.map",
        "style-a1B2c3D4.css",
        "chunk-x_9Kq-2Z.js",
    ],
)
def test_content_addressed(name: str) -> None:
    assert is_content_addressed(name)
    assert cache_control(name, 0) == IMMUTABLE


@pytest.mark.parametrize(
    "name",
    [
        "app.js",
        "base.css",
        "jquery-3.7.1.min.js",
        "bootstrap-datepicker.js",
        "font-Regular.woff2",
        "OpenSans-Bold1234.ttf",
        "report-20240101.pdf",
        "a-deadbeef.js",  # all letters: could be a word
        ".abcdef123456.css",  # nothing before the hash
        "base.96C479CEDF7A.css",  # Django hashes are lower case
        "logo-12345678.png",
        "index.html",
        "README.txt",
    ],
)
def test_not_content_addressed(name: str) -> None:
    assert not is_content_addressed(name)


def test_cache_control_max_age() -> None:
    assert cache_control("app.js", 0) == b"no-cache"
    assert cache_control("app.js", 600) == b"public, max-age=600"
    assert cache_control("app.js", 0.5) == b"no-cache"


# -- bounded caches -----------------------------------------------------------------------------


class Item:
    def __init__(self) -> None:
        self.evicted = False
        self.released = 0

    def evict(self) -> None:
        self.evicted = True

    def release(self, contents: ContentCache) -> None:
        self.released += 1


def test_content_cache_is_lru_by_bytes() -> None:
    cache = ContentCache(100)
    a, b, c = Item(), Item(), Item()
    assert cache.add(a, 40) and cache.add(b, 40)
    cache.touch(a)
    assert cache.add(c, 40)  # evicts b, the least recently used
    assert b.evicted and not a.evicted and cache.used == 80
    assert not cache.add(Item(), 101)
    cache.discard(a)
    assert cache.used == 40 and len(cache) == 1


def test_entry_cache_is_lru_by_count() -> None:
    entries: EntryCache[Item] = EntryCache(2, ContentCache(10))
    a, b, c = Item(), Item(), Item()
    entries.put("a", a)
    entries.put("b", b)
    assert entries.get("a") is a
    entries.put("c", c)
    assert entries.get("b") is None and b.released == 1
    entries.put("a", Item())  # replacing releases the old entry
    assert a.released == 1
    entries.drop("c")
    assert c.released == 1 and len(entries) == 1
