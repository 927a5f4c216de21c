"""Host header normalisation and host-pattern parsing for routing.

Request hosts and rule hosts are reduced to the same canonical form --
lowercase, no port, no trailing dot, IPv6 literals without brackets -- so that
matching an exact host is a single dict lookup. Hosts are compared as plain
strings: IDNs must be written in their ASCII (punycode) form in the config,
and IPv6 literals are not re-canonicalised (``[::1]`` and ``[0::1]`` differ).
"""

from __future__ import annotations

__all__ = ["HostPattern", "normalize_host", "parse_host_pattern"]


def normalize_host(raw: str) -> str:
    """Canonicalise a raw Host header value (or absolute-form authority).

    ``Example.COM.:8080`` -> ``example.com``; ``[::1]:3000`` -> ``::1``. A bare
    IPv6 address without brackets (invalid in a Host header but sent by some
    tools) is taken whole rather than having its last group mistaken for a
    port. Malformed input is never an error here: it simply normalises to a
    string that no rule host can equal.
    """
    host = raw
    if ":" in raw:
        if raw[0] == "[":
            end = raw.find("]")
            if end > 0:
                host = raw[1:end]
        else:
            name, _, port = raw.partition(":")
            if ":" not in port:
                host = name
    host = host.lower()
    if host[-1:] == ".":
        host = host[:-1]
    return host


class HostPattern:
    """A parsed rule host: an exact canonical host, or a wildcard suffix.

    For ``*.example.com`` ``suffix`` is ``.example.com``; a host matches when
    it ends with the suffix *and* has at least one character before it, which
    ``host.endswith(suffix, 1)`` checks in one call (so ``example.com`` itself
    does not match, while ``a.b.example.com`` does).
    """

    __slots__ = ("exact", "suffix")

    def __init__(self, exact: str | None, suffix: str | None) -> None:
        self.exact = exact
        self.suffix = suffix

    def matches(self, host: str) -> bool:
        """Test an already-normalised host; used at compile time, not per request."""
        if self.suffix is not None:
            return host.endswith(self.suffix, 1)
        return host == self.exact


def parse_host_pattern(pattern: str) -> HostPattern:
    """Parse a rule's ``host`` value; raises ValueError when it is invalid."""
    host = pattern.lower()
    if host[-1:] == ".":
        host = host[:-1]
    if host[:1] == "[" and host[-1:] == "]":
        host = host[1:-1]
        if ":" not in host or "*" in host:
            raise ValueError(f"host {pattern!r} is not a valid IPv6 literal")
    elif host.count(":") == 1:
        raise ValueError(f"host {pattern!r} must not include a port")
    if not host:
        raise ValueError("host must not be empty")
    if "*" in host:
        rest = host[2:]
        if not host.startswith("*.") or not rest or "*" in rest or rest.startswith("."):
            raise ValueError(f"host {pattern!r}: '*' is only allowed as a leading '*.' label")
        return HostPattern(None, host[1:])
    return HostPattern(host, None)
