"""The response cache of one configuration: the store, the tag generations, the fills.

Built by the master with the pipeline (before fork, so the workers share it copy-on-write)
and bound in each worker (:meth:`ResponseCache.bind`), which opens the LMDB store in that
process. Everything here is synchronous and quick (an LMDB read or write transaction, a
few shared-memory words); :mod:`bext.cache.handler` does the waiting around it.

What is shared by whom:

* the store (:mod:`bext.cache.store`): every worker, every generation and the next
  master after a binary upgrade, on disk;
* the tag generations (:mod:`bext.shm.tags`) and the fill claims (:mod:`bext.shm.fills`):
  the shared segment, which survives reloads and upgrades too;
* the in-flight fills of this worker (``filling``): this process only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from bext.cache.answer import client_headers
from bext.cache.directives import response_cache_control
from bext.cache.freshness import freshness_lifetime, initial_age
from bext.cache.key import host_key, key_host, url_prefix
from bext.cache.memory import Held, MemoryTier
from bext.cache.purge import PurgeRequest
from bext.cache.store import EntryMeta, Store, StoredResponse
from bext.cache.vary import SecondaryKey
from bext.config.schema import CacheConfig
from bext.protocol.events import Headers
from bext.shm.counters import NullCounters, SlotCounters
from bext.shm.fills import FillTable
from bext.shm.layout import Segment
from bext.shm.tags import HARD, TagTable
from bext.shm.versions import EntryVersions, version_slot

log = logging.getLogger("bext")

__all__ = ["Found", "PurgeResult", "ResponseCache"]


@dataclass(slots=True)
class Found:
    """A stored response that a lookup may serve, its policy numbers, and why it might be
    stale. ``stored`` may be shared with other requests (the memory tier): copy it before
    changing it."""

    held: Held
    soft_purged: bool
    """A soft purge (of a tag, a URL or everything) marked it stale since it was stored."""

    @property
    def stored(self) -> StoredResponse:
        return self.held.stored


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one purge did (the invalidation endpoint's answer)."""

    tags: int = 0
    """Tags invalidated (each one word in the shared segment)."""
    entries: int = 0
    """Stored entries removed, or marked stale for a soft purge."""
    all: bool = False

    def as_json(self) -> dict[str, object]:
        return {"tags": self.tags, "entries": self.entries, "all": self.all}


class ResponseCache:
    """The cache's state shared by the routes that use it (one per pipeline)."""

    def __init__(self, config: CacheConfig, segment: Segment | None = None) -> None:
        self.config = config
        self.path = config.store_path()
        self.store = Store(self.path, config.max_size, config.max_object_size)
        self._segment = segment if segment is not None else Segment()
        self.tags = TagTable(self._segment)
        self.versions = EntryVersions(self._segment)
        self.memory = MemoryTier(config.max_memory)
        """This worker's decoded copies of small hot entries."""
        self.fills: FillTable | None = None
        self.counters: SlotCounters = NullCounters()
        self.filling: dict[bytes, asyncio.Future[None]] = {}
        """The keys this worker is fetching, each with a future its other misses wait on."""
        self.background: set[asyncio.Task[None]] = set()
        """Refreshes running after a stale answer (held so that they are not collected)."""
        self.ready = False
        """The store opened in this process; until then (or if it cannot) the cache steps
        aside and every request goes upstream."""

    def check(self) -> None:
        """Refuse a store directory that cannot be used (for the master, before fork):
        it, or the nearest folder above it that exists, must be a writable directory.
        Nothing is created here (``bext check`` must not leave folders behind): the
        workers make the directory when they open the store."""
        path = self.path
        while not path.exists():
            if path.parent == path:
                break
            path = path.parent
        if not path.is_dir():
            raise NotADirectoryError(f"{path} is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path} is not writable")

    def bind(self, counters: SlotCounters, pid: int) -> None:
        """Open the store in this worker (after fork) and take its counters."""
        self.counters = counters
        self.fills = FillTable(self._segment, pid)
        try:
            self.store.open()
        except Exception as exc:  # a full or broken disk must not stop the worker
            log.error("cache: cannot open the store in %s (%s); serving without it",
                      self.path, exc)  # fmt: skip
            return
        self.ready = True

    def close(self) -> None:
        self.ready = False
        self.store.close()

    # -- lookups and stores -------------------------------------------------------------

    def lookup(self, key: bytes, request_headers: Headers) -> Found | None:
        """The stored response for ``key`` that the request selects (Vary), if its tags
        still allow it: from the memory tier while the key's version word says the copy
        is current, else from the store. Hard-invalidated entries are not removed here
        (that is a write): the next store replaces them."""
        held = self.memory.get(key, request_headers, self.versions.get)
        if held is None:
            slot = version_slot(key)
            version = self.versions.get(slot)  # read before the store: see memory.py
            try:
                stored = self.store.get(key, request_headers)
            except Exception:
                log.exception("cache: lookup failed; forwarding the request")
                return None
            if stored is None:
                return None
            held = self._hold(stored, version, slot)
            if stored.body is not None:
                self.memory.put(key, held)
        stored = held.stored
        state = self.tags.check(stored.tag_generations)
        if state == HARD:
            stored.close()
            return None
        return Found(held, soft_purged=bool(state) or stored.stale)

    def _hold(self, stored: StoredResponse, version: int, slot: int) -> Held:
        """The policy numbers of a stored response, computed once per copy."""
        headers = stored.headers
        lifetime = freshness_lifetime(
            stored.status,
            headers,
            response_time=stored.response_time,
            default_ttl=self.config.default_ttl,
        ).seconds
        age = initial_age(
            headers, request_time=stored.request_time, response_time=stored.response_time
        )
        plain = not response_cache_control(headers).no_cache
        return Held(stored, lifetime, age, plain, client_headers(headers), version, slot)

    def stamp(self, tags: Iterable[bytes]) -> tuple[tuple[int, int], ...]:
        """The tag generations an entry is stored with (:meth:`TagTable.stamp`)."""
        return self.tags.stamp(tags)

    def put(
        self,
        key: bytes,
        secondary: SecondaryKey,
        meta: EntryMeta,
        body: bytes | BinaryIO,
    ) -> bool:
        """Store a response; False (logged only when it is an error) if it was not."""
        try:
            stored = self.store.put(key, secondary, meta, body)
        except Exception:
            log.exception("cache: storing a response failed")
            return False
        finally:
            self.versions.bump(key)
        if stored:
            self.counters.cache("stored")
        return stored

    def update_headers(
        self,
        key: bytes,
        digest: str,
        headers: Headers,
        request_time: float,
        response_time: float,
        stamp: tuple[tuple[int, int], ...],
    ) -> None:
        """A 304 freshened a stored response (RFC 9111 §4.3.4)."""
        try:
            self.store.update_headers(
                key,
                digest,
                headers,
                request_time=request_time,
                response_time=response_time,
                tag_generations=stamp,
            )
        except Exception:
            log.exception("cache: updating stored headers failed")
        finally:
            self.versions.bump(key)

    # -- invalidation ---------------------------------------------------------------------

    def remove(
        self, prefix: bytes, match: Callable[[bytes], bool] | None = None, soft: bool = False
    ) -> int:
        """Remove (or with ``soft`` mark stale) every entry whose key starts with
        ``prefix`` (and that ``match`` accepts); the number of entries."""
        changed: list[bytes] = []
        act = self.store.mark_stale if soft else self.store.delete_prefix
        try:
            return act(prefix, match, changed)
        finally:
            for key in changed:
                self.versions.bump(key)

    def purge(self, request: PurgeRequest) -> PurgeResult:
        """Carry out a purge from the admin endpoint, ``PURGE`` or ``bext cache purge``.

        Tags and "all" are generation bumps (every worker sees them at once); URLs and
        prefixes are removed from the store, or marked stale when ``soft``.
        """
        soft = request.soft
        if request.all:
            self.tags.invalidate_all(soft=soft)
            entries = 0
            if not soft:
                entries = self.store.clear()
            return PurgeResult(entries=entries, all=True)
        if request.tags:
            self.tags.invalidate(request.tags, soft=soft)
        entries = 0
        for host, target in request.urls:
            entries += self.remove(url_prefix(host, target), soft=soft)
        for host, prefix in request.prefixes:
            encoded = prefix.encode("utf-8", "surrogateescape")
            entries += self.remove(encoded, _on_host(host) if host is not None else None, soft)
        return PurgeResult(tags=len(request.tags), entries=entries)


def _on_host(host: str) -> Callable[[bytes], bool]:
    wanted = host_key(host, "")
    return lambda key: key_host(key) == wanted
