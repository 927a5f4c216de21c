"""The deterministic content served by ``/download?size=N``.

The bytes are a fixed pattern of ``PATTERN_SIZE`` bytes repeated and cut at ``size``.
The pattern is the SHA-256 chain of a seed (incompressible, so neither gzip nor brotli can
hide a truncation), and its length is a prime, so that it never lines up with the 64 KiB
chunks: a dropped, duplicated or reordered chunk changes the SHA-256 even when the length
happens to match.

Tests can reproduce the body without the server::

    from shop.payload import payload_chunks, payload_sha256
    expected = payload_sha256(size)  # == the X-Content-SHA256 header
    body = b"".join(payload_chunks(size))

Hashing re-reads the cached pattern, not a generated body, so ``payload_sha256`` costs
one SHA-256 pass over ``size`` bytes and no allocation beyond the pattern; results are
memoised per size.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache

PATTERN_SIZE = 65_521
"""The largest prime below 64 KiB."""
CHUNK_SIZE = 64 * 1024
SEED = b"bext demo payload v1"


def _build_pattern() -> bytes:
    blocks: list[bytes] = []
    digest = hashlib.sha256(SEED).digest()
    total = 0
    while total < PATTERN_SIZE:
        blocks.append(digest)
        total += len(digest)
        digest = hashlib.sha256(digest).digest()
    return b"".join(blocks)[:PATTERN_SIZE]


PATTERN = _build_pattern()
_DOUBLE = memoryview(PATTERN + PATTERN)
"""Two copies, so that any window of up to PATTERN_SIZE bytes is one contiguous slice."""


def _windows(size: int, chunk_size: int) -> Iterator[memoryview]:
    """Slices of the repeated pattern, each at most ``chunk_size`` (<= PATTERN_SIZE)."""
    offset = 0
    remaining = size
    while remaining > 0:
        n = min(chunk_size, remaining)
        start = offset % PATTERN_SIZE
        yield _DOUBLE[start : start + n]
        offset += n
        remaining -= n


def payload_chunks(size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The first ``size`` bytes of the payload, in chunks of ``chunk_size`` bytes.

    ``chunk_size`` may be anything from 1 byte up; the bytes do not depend on it.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    step = min(chunk_size, PATTERN_SIZE)
    buffer = bytearray()
    for window in _windows(size, step):
        if step == chunk_size:
            yield bytes(window)
            continue
        buffer += window
        while len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)


async def apayload_chunks(size: int, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    """``payload_chunks`` as an async iterator (for Django under ASGI)."""
    for chunk in payload_chunks(size, chunk_size):
        yield chunk


@lru_cache(maxsize=64)
def payload_sha256(size: int) -> str:
    """The hex SHA-256 of ``b"".join(payload_chunks(size))``."""
    if size < 0:
        raise ValueError("size must be >= 0")
    hasher = hashlib.sha256()
    full, tail = divmod(size, PATTERN_SIZE)
    for _ in range(full):
        hasher.update(PATTERN)
    hasher.update(PATTERN[:tail])
    return hasher.hexdigest()
