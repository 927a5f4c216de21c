"""First-match request router, compiled once from the ordered rule list.

Semantics are deliberately the naive ones -- rules are tried in file order and
the first rule whose host and pattern both match wins -- but the compiled form
avoids testing every rule:

* The host is resolved first, to a *chain*: the file-ordered sub-list of rules
  that can apply to that host. There is one chain per distinct exact rule host
  (its own rules + wildcard rules matching it + any-host rules), one per
  wildcard suffix (for hosts not in the table; the wildcard rules that match
  a host are exactly those whose suffix is a suffix of the longest matching
  one, so the longest match determines the whole set), and one for "no known
  host" (any-host rules only). Wildcard membership is therefore decided at
  compile time and a chain never checks hosts while matching.
* Inside a chain, exact-path rules (and the bare ``/p`` of ``/p/**``) live in
  one dict mapping path -> first (position, rule); only prefix and regex rules
  are scanned, and the scan stops as soon as it passes the position of the
  exact hit. A host-independent catch-all ends the chain, since nothing after
  it is reachable, and becomes the chain's default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from bext.routing.glob import GlobKind, GlobMatcher, compile_glob
from bext.routing.host import HostPattern, normalize_host, parse_host_pattern

__all__ = ["RouteLike", "Router"]


class RouteLike(Protocol):
    """What the router needs from a rule; the config's route objects satisfy it."""

    @property
    def pattern(self) -> str: ...

    @property
    def host(self) -> str | None: ...


R = TypeVar("R", bound=RouteLike)

_Test = Callable[[str], object]

# Up to this many distinct wildcard host suffixes are tried one by one.
_FEW_SUFFIXES = 8


class _Chain(Generic[R]):
    """The ordered rules that can apply to one class of hosts, ready to match."""

    __slots__ = ("default", "exact", "scan")

    def __init__(self, entries: Sequence[tuple[int, R, GlobMatcher]]) -> None:
        self.exact: dict[str, tuple[int, R]] = {}
        # (position, literal prefix or None, regex test, rule): prefixes are tested
        # inline with str.startswith, measurably cheaper than any callable.
        scan: list[tuple[int, str | None, _Test, R]] = []
        self.default: R | None = None
        for pos, rule, glob in entries:
            kind = glob.kind
            if kind is GlobKind.ANY:
                self.default = rule
                break
            if kind is GlobKind.EXACT or kind is GlobKind.PREFIX:
                self.exact.setdefault(glob.literal, (pos, rule))
            if kind is GlobKind.PREFIX:
                scan.append((pos, glob.literal + "/", glob.test, rule))
            elif kind is GlobKind.REGEX or kind is GlobKind.SEGMENTS:
                scan.append((pos, None, glob.test, rule))
        self.scan = tuple(scan)

    def match(self, path: str) -> R | None:
        hit = self.exact.get(path)
        if hit is None:
            for _pos, prefix, test, rule in self.scan:
                if prefix is not None:
                    if path.startswith(prefix):
                        return rule
                elif test(path):
                    return rule
            return self.default
        limit, found = hit
        for pos, prefix, test, rule in self.scan:
            if pos > limit:
                break
            if prefix is not None:
                if path.startswith(prefix):
                    return rule
            elif test(path):
                return rule
        return found


class Router(Generic[R]):
    """Compiled routing table; ``match`` returns the first matching rule or None."""

    __slots__ = (
        "_any",
        "_by_host",
        "_by_suffix",
        "_few_suffixes",
        "_host_aware",
        "_suffix_span",
        "rules",
    )

    def __init__(self, rules: Sequence[R]) -> None:
        self.rules: tuple[R, ...] = tuple(rules)
        compiled: list[tuple[int, R, GlobMatcher, HostPattern | None]] = []
        for pos, rule in enumerate(self.rules):
            try:
                glob = compile_glob(rule.pattern)
                host = None if rule.host is None else parse_host_pattern(rule.host)
            except ValueError as exc:
                raise ValueError(f"route #{pos + 1}: {exc}") from exc
            compiled.append((pos, rule, glob, host))

        def chain_for(host: str | None) -> _Chain[R]:
            return _Chain(
                [
                    (pos, rule, glob)
                    for pos, rule, glob, pat in compiled
                    if pat is None or (host is not None and pat.matches(host))
                ]
            )

        exact_hosts = {p.exact for *_, p in compiled if p is not None and p.exact is not None}
        suffixes = {p.suffix for *_, p in compiled if p is not None and p.suffix is not None}
        self._any: _Chain[R] = chain_for(None)
        self._by_host: dict[str, _Chain[R]] = {h: chain_for(h) for h in exact_hosts}
        # A representative host for a suffix matches exactly the wildcard rules
        # whose suffix is a suffix of it: "x" + ".b.example.com" matches
        # *.b.example.com and *.example.com, but no longer suffix.
        self._by_suffix: dict[str, _Chain[R]] = {s: chain_for("x" + s) for s in suffixes}
        self._suffix_span = max((len(s) for s in suffixes), default=0)
        # With a handful of wildcard suffixes, trying each (longest first, so the
        # first hit is the longest match) beats slicing the host label by label.
        self._few_suffixes: tuple[tuple[str, _Chain[R]], ...] | None = None
        if len(suffixes) <= _FEW_SUFFIXES:
            self._few_suffixes = tuple(
                sorted(self._by_suffix.items(), key=lambda item: len(item[0]), reverse=True)
            )
        # Without host-specific rules every host gets the same chain: skip the Host work.
        self._host_aware = bool(exact_hosts or suffixes)

    def match(self, host: str | None, path: str) -> R | None:
        """Return the first rule matching ``host`` (raw Host header) and ``path``.

        ``path`` must already be normalised (see :func:`bext.routing.path.normalize_path`).
        """
        if host is None or not self._host_aware:
            return self._any.match(path)
        # Most requests send an already-canonical Host; try it before normalising.
        chain = self._by_host.get(host)
        if chain is None:
            key = normalize_host(host)
            chain = self._by_host.get(key)
            if chain is None:
                chain = self._wildcard_chain(key) if self._suffix_span else self._any
        return chain.match(path)

    def _wildcard_chain(self, key: str) -> _Chain[R]:
        """Find the chain for the longest wildcard suffix matching ``key``.

        Only dots within the last ``_suffix_span`` characters can start a
        matching suffix, which bounds the work for hostile many-label hosts.
        """
        few = self._few_suffixes
        if few is not None:
            for suffix, candidate in few:
                if key.endswith(suffix, 1):
                    return candidate
            return self._any
        by_suffix = self._by_suffix
        dot = key.find(".", max(1, len(key) - self._suffix_span))
        while dot > 0:
            chain = by_suffix.get(key[dot:])
            if chain is not None:
                return chain
            dot = key.find(".", dot + 1)
        return self._any
