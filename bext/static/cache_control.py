"""Cache-Control for static files: a year for content-addressed names, short otherwise.

A file whose name contains a hash of its content never changes under that name: a new
version gets a new name, and the page referring to it changes instead. Such files can be
cached by browsers and CDNs for a year and marked ``immutable`` (no revalidation even on
reload). Everything else gets ``public, max-age=<static.max_age>`` (``no-cache`` when it
is 0: store, but revalidate every time), always with ETag and Last-Modified, so an edited
file shows up on the next revalidation.

Names recognised as content-addressed (``.map`` may follow the extension):

* Django's ManifestStaticFilesStorage: ``name.<12 lowercase hex>.ext`` (and
  ``LICENSE.<12 hex>`` for names without extension).
* Bundlers writing hex hashes (webpack ``[contenthash]``, Parcel, Django-compressor):
  ``name.<8-64 lowercase hex>.ext`` or ``name-<hex>.ext`` (also ``.chunk.js``-style double
  extensions), holding both a digit and a letter.
* Rollup/Vite ``[hash]`` (8 base64url characters): ``name-<8 chars>.ext`` or
  ``name.<8 chars>.ext`` when the token contains a digit and looks random (at least 3
  changes between upper case, lower case, digits and ``-_``).

The rules are deliberately conservative: a false positive makes browsers keep an old
file for a year, a false negative only costs a revalidation. ``font-Regular.woff2``,
``jquery-3.7.1.min.js``, ``report-20240101.pdf`` and ``bootstrap-datepicker.js`` are not
content-addressed; some genuine Vite hashes without a digit are missed. A rule's own
``cache-control`` header always wins over this guess.
"""

from __future__ import annotations

import itertools
import re

__all__ = ["IMMUTABLE", "cache_control", "is_content_addressed"]

IMMUTABLE = b"public, max-age=31536000, immutable"

# Anchored at the end of the base name; "." before the dot-hash keeps a name in front.
_DJANGO = re.compile(r".\.[0-9a-f]{12}(?:\.[A-Za-z0-9]+)?(?:\.map)?$")
_HEX = re.compile(r".[.-]([0-9a-f]{8,64})\.[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?(?:\.map)?$")
_TOKEN = re.compile(r".[.-]([A-Za-z0-9_-]{8})\.[A-Za-z0-9]+(?:\.map)?$")


def _char_class(char: str) -> int:
    if char.isdigit():
        return 0
    if char.isupper():
        return 1
    if char.islower():
        return 2
    return 3


def _looks_random(token: str) -> bool:
    if not any(char.isdigit() for char in token):
        return False
    changes = sum(1 for a, b in itertools.pairwise(token) if _char_class(a) != _char_class(b))
    return changes >= 3


def is_content_addressed(name: str) -> bool:
    """Whether base name ``name`` carries a content hash (see the module docstring)."""
    if _DJANGO.search(name) is not None:
        return True
    match = _HEX.search(name)
    if match is not None:
        token = match.group(1)
        if any(c.isdigit() for c in token) and any(c.isalpha() for c in token):
            return True
    match = _TOKEN.search(name)
    return match is not None and _looks_random(match.group(1))


def cache_control(name: str, max_age: float) -> bytes:
    """The Cache-Control value bext gives file ``name`` (a base name)."""
    if is_content_addressed(name):
        return IMMUTABLE
    seconds = int(max_age)
    if seconds <= 0:
        return b"no-cache"
    return b"public, max-age=%d" % seconds
