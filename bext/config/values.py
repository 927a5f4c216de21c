"""Checks for single config values: URL patterns, host patterns, addresses, headers, paths.

Each function takes one value and either returns it normalised or raises `ValueError`
with a reason; the loader adds the key path. They live apart from the table walking in
`load.py` so the routing and proxy code, and tests, can rely on exactly the same rules
that admitted the value in the first place.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from bext.config.errors import did_you_mean, quote
from bext.config.schema import REDIRECT_PLACEHOLDERS, UpstreamServer
from bext.routing.glob import validate_glob
from bext.routing.host import parse_host_pattern

__all__ = [
    "check_header_name",
    "check_header_value",
    "check_host_pattern",
    "check_network",
    "check_path_text",
    "check_pattern",
    "check_redirect_target",
    "parse_listen_host",
    "parse_upstream_url",
    "resolve_path",
]

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A DNS label; underscores are tolerated because real internal names use them.
_LABEL_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
# Headers whose value bext computes itself: letting a rule set them would corrupt message
# framing (content-length, transfer-encoding) or connection management (the rest).
_MANAGED_HEADERS = frozenset(
    {"connection", "content-length", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)
# What bext's own requests (OTLP export) say about themselves.
_EXPORT_MANAGED_HEADERS = frozenset(
    {"host", "content-type", "content-encoding", "user-agent", "expect"}
)
_FORBIDDEN_IN_VALUES = ("\r", "\n", "\0")
# C0 and C1 control characters (NUL included) and lone surrogates: no file name a config
# means, and things no system call takes (NUL) or no log line shows faithfully.
_NOT_IN_PATHS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_path_text(text: str) -> str:
    """Refuse a file path holding NUL, a control character or a lone surrogate.

    Every path-valued key goes through here (via :func:`resolve_path`), so a path that
    would make ``open()`` or ``bind()`` raise ``ValueError`` in the master, or put a control
    character into a log line, is refused when the config is read, with its key path.
    """
    bad = _NOT_IN_PATHS.search(text)
    if bad is not None:
        what = "a NUL byte" if bad.group() == "\0" else "a control character"
        shown = _NOT_IN_PATHS.sub(lambda m: f"\\u{ord(m.group()):04x}", quote(text))
        raise ValueError(f"must not contain {what}, got {shown}")
    return text


def resolve_path(base: Path, text: str) -> Path:
    """Make `text` an absolute, normalised path; relative paths are taken from `base`.

    "~" is expanded. Symlinks are deliberately NOT resolved: deployments commonly point
    `/srv/app/current` at the latest release, and static files must follow that link when
    it moves, not stay pinned to the release that was current when the config loaded.
    Raises `ValueError` for what :func:`check_path_text` refuses, and for a "~" that
    cannot be expanded (no home directory).
    """
    check_path_text(text)
    try:
        path = Path(text).expanduser()
    except RuntimeError as exc:  # "~" when neither $HOME nor the user database says
        raise ValueError(f"cannot expand {quote(text)}: {exc}") from None
    if not path.is_absolute():
        path = base / path
    return Path(os.path.normpath(path))


def check_pattern(pattern: str) -> str:
    """Validate a route glob: "/static/**", "/*.txt", "/a/**/b".

    The glob grammar itself belongs to :mod:`bext.routing.glob`; this adds what a URL path
    in a config file must not contain.
    """
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" or ch in "?#" for ch in pattern):
        raise ValueError(
            f'must be a URL path without spaces, control characters, "?" or "#", '
            f"got {quote(pattern)}"
        )
    error = validate_glob(pattern)
    if error is not None:
        raise ValueError(error)
    return pattern


def check_host_pattern(host: str) -> str:
    """Validate and lowercase a Host match: "example.com" or "*.example.com".

    A trailing dot is dropped (browsers may send "example.com."). Ports are refused
    because bext matches the host name alone, whichever listener the request came in on.
    """
    if not host:
        raise ValueError("must not be empty")
    if any(ch.isspace() for ch in host):
        raise ValueError(f"must not contain spaces, got {quote(host)}")
    name = host.lower()
    if name.startswith("[") and name.endswith("]"):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ValueError(f"not a valid IPv6 address, got {quote(host)}") from None
        return name
    if ":" in name:
        raise ValueError(f"ports are not part of host matching, got {quote(host)}")
    name = name.removesuffix(".")
    rest = name[2:] if name.startswith("*.") else name
    if "*" in rest:
        raise ValueError(
            f'a wildcard is only allowed as the whole first label, as in "*.example.com", '
            f"got {quote(host)}"
        )
    if len(rest) > 253 or not all(_LABEL_RE.fullmatch(label) for label in rest.split(".")):
        raise ValueError(f"not a valid host name, got {quote(host)}")
    parse_host_pattern(name)  # what is accepted here, the router must be able to compile
    return name


def parse_listen_host(text: str) -> tuple[str, ...]:
    """Turn one `server.host` entry into the IP addresses to bind.

    Only IP literals (and "localhost") are accepted: binding to a DNS name would make the
    listening address depend on a resolver at boot, which is how servers end up listening
    on the wrong interface. "localhost" means both loopbacks, IPv4 and IPv6.
    """
    if text == "localhost":
        return ("127.0.0.1", "::1")
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return (str(ipaddress.ip_address(literal)),)
    except ValueError:
        raise ValueError(
            f'expected an IP address (such as "0.0.0.0" or "::") or "localhost", got {quote(text)}'
        ) from None


def check_network(text: str) -> str:
    """Normalise an address or CIDR ("10.0.0.0/8", "::1") to network form
    (``trusted_proxies``, a rule's ``allow`` and ``deny``).

    Host bits are allowed ("10.1.2.3/8" means 10.0.0.0/8) since people often paste an
    address with its prefix length.
    """
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(
            f'expected an IP address or CIDR such as "10.0.0.0/8", got {quote(text)}'
        ) from None


def parse_upstream_url(url: str, *, weight: int = 1, base_dir: Path) -> UpstreamServer:
    """Parse an upstream server URL: "http://HOST[:PORT]" or "unix:/path/to.sock".

    Paths, queries and credentials are refused: bext forwards the client's own path, so a
    path in the upstream URL would be silently ignored or, worse, silently prefixed.
    A relative unix socket path is taken from `base_dir` (the config file's folder).
    """
    check_path_text(url)
    if any(ch.isspace() for ch in url):
        raise ValueError(f"must not contain spaces, got {quote(url)}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ValueError(
            "https upstreams are not supported yet; "
            "Gunicorn/Uvicorn listen on plain HTTP on localhost"
        )
    if scheme not in ("http", "unix"):
        raise ValueError(
            f'expected "http://HOST:PORT" or "unix:/path/to.sock", got {quote(url)}'
            + did_you_mean(scheme, ("http", "unix"))
        )
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"must not have a query or fragment, got {quote(url)}")
    if scheme == "unix":
        if parts.netloc:
            raise ValueError(
                f'expected "unix:/path/to.sock" or "unix:///path/to.sock", got {quote(url)}'
            )
        if not parts.path:
            raise ValueError(f"needs a socket path, got {quote(url)}")
        return UpstreamServer(
            url=url, weight=weight, scheme="unix", unix_path=resolve_path(base_dir, parts.path)
        )
    if parts.path not in ("", "/"):
        raise ValueError(
            f"must not have a path ({quote(parts.path)}); bext forwards the request path "
            f"as received, got {quote(url)}"
        )
    if "@" in parts.netloc:
        raise ValueError(f"must not contain credentials, got {quote(url)}")
    host = parts.hostname
    if not host:
        raise ValueError(f"needs a host, got {quote(url)}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"has an invalid port, got {quote(url)}") from None
    if port == 0:
        raise ValueError(f"port must be between 1 and 65535, got {quote(url)}")
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"has an invalid IPv6 address, got {quote(url)}") from None
    else:
        try:
            check_host_pattern(host)
        except ValueError:
            raise ValueError(f"has an invalid host, got {quote(url)}") from None
        if "*" in host:
            raise ValueError(f"has an invalid host, got {quote(url)}")
    return UpstreamServer(
        url=url, weight=weight, scheme="http", host=host, port=80 if port is None else port
    )


def check_header_name(name: str) -> str:
    """Validate a response header name and return it lowercased.

    Names are lowercased once here because HTTP/2 and HTTP/3 require lowercase on the
    wire and HTTP/1.1 does not care.
    """
    return _header_name(name, _MANAGED_HEADERS, "is managed by bext and cannot be set by a rule")


def check_export_header_name(name: str) -> str:
    """Validate a header name for bext's OTLP export requests; returned lowercased.

    Collectors want authentication here (``authorization``, ``x-api-key``...); the fields
    that frame the request or say what its body is stay bext's."""
    return _header_name(
        name, _MANAGED_HEADERS | _EXPORT_MANAGED_HEADERS, "is set by bext on export requests"
    )


def _header_name(name: str, refused: frozenset[str], why: str) -> str:
    """``name`` lowercased, if it is a token and not one of ``refused`` (``why`` says)."""
    if not _TOKEN_RE.fullmatch(name):
        raise ValueError(f"{quote(name)} is not a valid HTTP header name")
    lowered = name.lower()
    if lowered in refused:
        raise ValueError(f"{quote(lowered)} {why}")
    return lowered


def check_header_value(value: str, *, secret: bool = False) -> str:
    """Refuse CR, LF and NUL, which would let a value split the response (RFC 9110 5.5).

    Other control characters and non-ASCII text are refused too: they are not portable in
    header fields, and catching them here beats a worker failing to encode them later.
    ``secret``: the value (an API key) is not repeated in the message.
    """
    shown = "the value is not shown" if secret else f"got {quote(value)}"
    if any(ch in value for ch in _FORBIDDEN_IN_VALUES):
        raise ValueError(f"must not contain CR, LF or NUL characters, {shown}")
    if not all(ch == "\t" or " " <= ch <= "~" for ch in value):
        raise ValueError(
            f"must be printable ASCII (encode other text, e.g. as RFC 8187 or "
            f"percent-encoding), {shown}"
        )
    return value


def check_redirect_target(target: str) -> str:
    """Validate a redirect `to`, which may use the placeholders {path} and {query}."""
    if not target:
        raise ValueError("must not be empty")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in target):
        raise ValueError(f"must not contain spaces or control characters, got {quote(target)}")
    if not target.isascii() or "\x7f" in target:
        raise ValueError(f"must be ASCII; percent-encode other characters, got {quote(target)}")
    for match in _PLACEHOLDER_RE.finditer(target):
        if match.group(1) not in REDIRECT_PLACEHOLDERS:
            known = ["{" + name + "}" for name in REDIRECT_PLACEHOLDERS]
            raise ValueError(
                f"unknown placeholder {quote(match.group(0))} (known: {', '.join(known)})"
                + did_you_mean(match.group(0), known)
            )
    leftover = _PLACEHOLDER_RE.sub("", target)
    if "{" in leftover or "}" in leftover:
        raise ValueError(f'has an unmatched "{{" or "}}", got {quote(target)}')
    return target
