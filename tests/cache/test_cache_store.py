from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bext.cache.store import EntryMeta, Store, StoredResponse, StoreError
from bext.cache.vary import SecondaryKey, secondary_key
from bext.protocol.events import Headers

INLINE = 1024


def meta(status: int = 200, headers: Headers | None = None, t: float = 1000.0) -> EntryMeta:
    return EntryMeta(
        status=status,
        headers=headers if headers is not None else [(b"content-type", b"text/html")],
        request_time=t,
        response_time=t + 0.5,
        tags=(b"products", b"product:1"),
        tag_generations=((123, 4), (2**63 + 5, 0)),
    )


def read_body(response: StoredResponse) -> bytes:
    if response.body is not None:
        return response.body
    assert response.fd is not None
    return os.pread(response.fd, response.length, response.offset)


def body_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "bodies").rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "cache", max_size=1 << 20, max_object_size=200_000, inline_limit=INLINE)
    s.open()
    yield s
    s.close()


NOVARY = SecondaryKey()


def test_inline_round_trip(store: Store) -> None:
    assert store.get(b"GET https example.com /a", []) is None
    assert store.put(b"GET https example.com /a", NOVARY, meta(), b"hello")
    with store.get(b"GET https example.com /a", []) as got:  # type: ignore[union-attr]
        assert got.body == b"hello"
        assert got.fd is None
        assert got.status == 200
        assert got.headers == [(b"content-type", b"text/html")]
        assert got.request_time == 1000.0
        assert got.response_time == 1000.5
        assert got.tags == (b"products", b"product:1")
        assert got.tag_generations == ((123, 4), (2**63 + 5, 0))
        assert got.length == 5
        assert got.secondary == NOVARY
    assert body_files(store.path) == []
    assert store.stats().entries == 1


def test_file_backed_round_trip(store: Store) -> None:
    body = os.urandom(50_000)
    assert store.put(b"k", NOVARY, meta(), body)
    got = store.get(b"k", [])
    assert got is not None
    assert got.body is None and got.fd is not None
    assert got.length == len(body)
    assert os.pread(got.fd, got.length, got.offset) == body
    got.close()
    assert got.fd is None
    files = body_files(store.path)
    assert len(files) == 1 and not files[0].name.startswith(".tmp")


def test_stream_body(store: Store) -> None:
    body = os.urandom(3 * INLINE + 7)
    assert store.put(b"k", NOVARY, meta(), io.BytesIO(body))
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == body
    assert store.put(b"small", NOVARY, meta(), io.BytesIO(b"tiny"))
    with store.get(b"small", []) as got:  # type: ignore[union-attr]
        assert got.body == b"tiny"


def test_max_object_size_refused(store: Store) -> None:
    assert not store.put(b"k", NOVARY, meta(), b"x" * 200_001)
    assert not store.put(b"k", NOVARY, meta(), io.BytesIO(b"x" * 200_001))
    assert store.get(b"k", []) is None
    assert body_files(store.path) == []  # the streamed temp file is gone too
    assert store.put(b"k", NOVARY, meta(), b"x" * 200_000)


def test_replacing_a_variant_removes_its_old_file(store: Store) -> None:
    assert store.put(b"k", NOVARY, meta(), b"a" * 5000)
    assert store.put(b"k", NOVARY, meta(), b"b" * 6000)
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"b" * 6000
    assert len(body_files(store.path)) == 1
    assert store.put(b"k", NOVARY, meta(), b"inline now")
    assert body_files(store.path) == []
    assert store.stats().entries == 1


def test_variants_by_vary(store: Store) -> None:
    response = [(b"vary", b"Accept-Encoding")]
    gzip = [(b"accept-encoding", b"gzip")]
    br = [(b"accept-encoding", b"br")]
    assert store.put(b"k", secondary_key(response, gzip), meta(), b"gzipped")
    assert store.put(b"k", secondary_key(response, br), meta(), b"brotli" * 1000)
    assert store.put(b"k", secondary_key(response, []), meta(), b"identity")
    with store.get(b"k", gzip) as got:  # type: ignore[union-attr]
        assert got.body == b"gzipped"
        assert got.secondary == secondary_key(response, gzip)
    with store.get(b"k", [(b"Accept-Encoding", b" br ")]) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"brotli" * 1000
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert got.body == b"identity"
    assert store.get(b"k", [(b"accept-encoding", b"zstd")]) is None
    assert store.stats().entries == 3
    # Vary: * is never stored
    assert not store.put(b"star", SecondaryKey(star=True), meta(), b"x")
    assert store.get(b"star", []) is None


def test_most_recent_matching_variant_wins(store: Store) -> None:
    old = SecondaryKey(((b"accept", b"a"),))
    new = SecondaryKey(((b"accept", b"a"), (b"cookie", None)))
    assert store.put(b"k", new, meta(t=2000.0), b"new")
    assert store.put(b"k", old, meta(t=1000.0), b"old")
    with store.get(b"k", [(b"accept", b"a")]) as got:  # type: ignore[union-attr]
        assert got.body == b"new"


def test_update_headers(store: Store) -> None:
    key = SecondaryKey(((b"accept", b"a"),))
    assert store.put(b"k", key, meta(), b"x" * 5000)
    before = store.stats().bytes
    new_headers = [(b"content-type", b"text/html"), (b"etag", b'"v2"'), (b"x-long", b"y" * 100)]
    assert store.update_headers(b"k", key.digest(), new_headers, response_time=5000.0)
    with store.get(b"k", [(b"accept", b"a")]) as got:  # type: ignore[union-attr]
        assert got.headers == new_headers
        assert got.response_time == 5000.0
        assert got.request_time == 1000.0
        assert read_body(got) == b"x" * 5000
    assert store.stats().bytes > before
    assert not store.update_headers(b"k", SecondaryKey().digest(), new_headers)
    assert not store.update_headers(b"other", key.digest(), new_headers)


def test_delete(store: Store) -> None:
    a, b = SecondaryKey(((b"accept", b"a"),)), SecondaryKey(((b"accept", b"b"),))
    assert store.put(b"k", a, meta(), b"a" * 3000)
    assert store.put(b"k", b, meta(), b"b")
    assert store.put(b"k2", NOVARY, meta(), b"other")
    assert store.delete(b"k") == 2
    assert store.get(b"k", [(b"accept", b"a")]) is None
    assert store.get(b"k", [(b"accept", b"b")]) is None
    assert store.delete(b"k") == 0
    assert body_files(store.path) == []
    with store.get(b"k2", []) as got:  # type: ignore[union-attr]
        assert got.body == b"other"
    assert store.stats().entries == 1


def test_delete_prefix(store: Store) -> None:
    long_a = b"GET https h /long/" + b"a" * 600
    long_b = b"GET https h /long/" + b"a" * 500 + b"b" * 100
    keys = [
        b"GET https h /blog",
        b"GET https h /blog/1",
        b"GET https h /blog/2",
        b"GET https h /blogroll",
        b"GET https h /shop/1",
        b"GET https h2 /blog/1",
        long_a,
        long_b,
    ]
    for key in keys:
        assert store.put(key, NOVARY, meta(), key * 10)
    assert store.delete_prefix(b"GET https h /blog/") == 2
    assert store.get(b"GET https h /blog/1", []) is None
    assert store.get(b"GET https h /blog/2", []) is None
    for key in (b"GET https h /blog", b"GET https h /blogroll", b"GET https h2 /blog/1"):
        with store.get(key, []) as got:  # type: ignore[union-attr]
            assert read_body(got) == key * 10
    # prefixes longer than LMDB's key limit still select exactly
    assert store.delete_prefix(b"GET https h /long/" + b"a" * 550) == 1
    assert store.get(long_a, []) is None
    with store.get(long_b, []) as got:  # type: ignore[union-attr]
        assert read_body(got) == long_b * 10
    assert store.delete_prefix(b"GET https h ") == 4
    assert store.stats().entries == 1
    assert len(body_files(store.path)) == 0


def test_clear(store: Store) -> None:
    for i in range(5):
        assert store.put(b"k%d" % i, NOVARY, meta(), bytes([i]) * (i * 1000))
    assert store.clear() == 5
    assert all(store.get(b"k%d" % i, []) is None for i in range(5))
    assert body_files(store.path) == []
    stats = store.stats()
    assert stats.entries == 0 and stats.bytes == 0
    assert store.put(b"k", NOVARY, meta(), b"again")
    assert store.get(b"k", []) is not None


def test_size_bound_and_lru_order(tmp_path: Path) -> None:
    store = Store(tmp_path, max_size=20_000, max_object_size=10_000, inline_limit=INLINE)
    store.touch_interval = 0
    store.open()
    for name in (b"a", b"b", b"c", b"d"):
        assert store.put(name, NOVARY, meta(), name * 4000)
    assert store.stats().bytes <= 20_000
    assert store.stats().entries == 4
    store.get(b"a", []).close()  # type: ignore[union-attr]  # a is now the most recent
    assert store.put(b"e", NOVARY, meta(), b"e" * 4000)  # evicts b, the least recent
    assert store.get(b"b", []) is None
    for name in (b"a", b"c", b"d", b"e"):
        with store.get(name, []) as got:  # type: ignore[union-attr]
            assert read_body(got) == name * 4000
    # the reads above made the order a, c, d, e: the next put evicts a, then c
    assert store.put(b"f", NOVARY, meta(), b"f" * 9000)
    assert store.get(b"a", []) is None
    assert store.get(b"c", []) is None
    for name in (b"d", b"e"):
        store.get(name, []).close()  # type: ignore[union-attr]
    stats = store.stats()
    assert stats.bytes <= 20_000
    assert stats.evictions == 3
    assert len(body_files(tmp_path)) == stats.entries == 3
    store.close()


def test_touch_is_rate_limited(tmp_path: Path) -> None:
    store = Store(tmp_path, max_size=20_000, max_object_size=10_000, inline_limit=INLINE)
    store.touch_interval = 3600
    store.open()
    for name in (b"a", b"b", b"c", b"d"):
        assert store.put(name, NOVARY, meta(), name * 4000)
    store.get(b"a", []).close()  # type: ignore[union-attr]  # too soon: not promoted
    assert store.put(b"e", NOVARY, meta(), b"e" * 4000)
    assert store.get(b"a", []) is None
    store.close()


def test_reopen_after_close_keeps_entries(tmp_path: Path) -> None:
    store = Store(tmp_path, max_size=1 << 20, max_object_size=100_000, inline_limit=INLINE)
    store.open()
    assert store.put(b"small", NOVARY, meta(), b"s")
    assert store.put(b"big", NOVARY, meta(), b"B" * 50_000)
    store.close()
    with pytest.raises(StoreError):
        store.get(b"small", [])
    again = Store(tmp_path, max_size=1 << 20, max_object_size=100_000, inline_limit=INLINE)
    again.open()
    with again.get(b"small", []) as got:  # type: ignore[union-attr]
        assert got.body == b"s"
    with again.get(b"big", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"B" * 50_000
    assert again.stats().entries == 2
    again.close()


def wait_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_use_across_fork_is_refused(store: Store) -> None:
    assert store.put(b"k", NOVARY, meta(), b"v")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            store.get(b"k", [])
        except StoreError:
            code = 0
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert got.body == b"v"


def test_killed_writer_leaves_no_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    store = Store(root, max_size=1 << 20, max_object_size=100_000, inline_limit=INLINE)
    store.open()
    assert store.put(b"k", NOVARY, meta(), b"old" * 1000)
    pid = os.fork()
    if pid == 0:
        try:
            store.open()

            def die(path: str) -> None:
                os._exit(7)

            store.on_temp_written = die
            store.put(b"k", NOVARY, meta(), b"new" * 10_000)
        finally:
            os._exit(1)
    assert wait_child(pid) == 7
    temps = [p for p in body_files(root) if p.name.startswith(".tmp.")]
    assert len(temps) == 1
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"old" * 1000  # the previous complete write
    store.close()
    # a young temp file may belong to a live writer: kept
    young = Store(root, max_size=1 << 20, max_object_size=100_000)
    young.open()
    young.close()
    assert temps[0].exists()
    reopened = Store(root, max_size=1 << 20, max_object_size=100_000, temp_max_age=0)
    reopened.open()
    assert not temps[0].exists()
    with reopened.get(b"k", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"old" * 1000
    reopened.close()


def test_sweep_orphans(store: Store) -> None:
    assert store.put(b"k", NOVARY, meta(), b"x" * 5000)
    orphan = store.path / "bodies" / "ab" / ("ab" * 32 + "-0011223344556677")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    assert store.sweep_orphans(min_age=3600) == 0
    assert store.sweep_orphans(min_age=0) == 1
    assert not orphan.exists()
    with store.get(b"k", []) as got:  # type: ignore[union-attr]
        assert read_body(got) == b"x" * 5000


def make_body(rng: random.Random, writer: int) -> bytes:
    payload = f"writer {writer} ".encode() + rng.randbytes(rng.choice([10, 900, 3000, 40_000]))
    return hashlib.sha256(payload).digest() + payload


def check_body(body: bytes) -> bool:
    return len(body) > 32 and hashlib.sha256(body[32:]).digest() == body[:32]


def test_concurrent_writers_never_tear(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    parent = Store(root, max_size=4 << 20, max_object_size=100_000, inline_limit=INLINE)
    parent.open()
    parent.close()
    writers = 4
    deadline = time.monotonic() + 3.0
    pids = []
    for n in range(writers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                store = Store(root, max_size=4 << 20, max_object_size=100_000, inline_limit=INLINE)
                store.touch_interval = 0
                store.open()
                rng = random.Random(n)
                bad = 0
                i = 0
                while time.monotonic() < deadline and i < 400:
                    i += 1
                    key = b"shared" if i % 2 else b"own-%d" % n
                    assert store.put(key, NOVARY, meta(), make_body(rng, n))
                    for read_key in (b"shared", b"own-%d" % n):
                        got = store.get(read_key, [])
                        if got is None:
                            continue
                        with got:
                            body = read_body(got)
                        if not check_body(body) or len(body) != got.length:
                            bad += 1
                        if read_key != b"shared" and not body[32:].startswith(
                            f"writer {n} ".encode()
                        ):
                            bad += 1
                store.close()
                code = 0 if bad == 0 else 2
            finally:
                os._exit(code)
        pids.append(pid)
    assert [wait_child(pid) for pid in pids] == [0] * writers
    store = Store(root, max_size=4 << 20, max_object_size=100_000, inline_limit=INLINE)
    store.open()
    for key in [b"shared"] + [b"own-%d" % n for n in range(writers)]:
        with store.get(key, []) as got:  # type: ignore[union-attr]
            assert check_body(read_body(got))
    stats = store.stats()
    assert stats.entries == writers + 1
    # every body file belongs to a live entry: replaced files were all removed
    assert len(body_files(root)) <= writers + 1
    assert not [p for p in body_files(root) if p.name.startswith(".tmp.")]
    store.close()
