"""URL path -> file path, and the checks that keep a static rule inside its root.

This is the traversal boundary of the static server. ``request.path`` arrives normalised
(:func:`bext.routing.path.normalize_path`: percent-decoded, dot-segments resolved, slashes
merged, no control characters), so a path can no longer climb with ``..``. What is left
to refuse here, on the part of the path below the rule's prefix:

* the text ``%2F`` (any case): an encoded slash the normaliser deliberately kept as text,
  also what ``%252F`` decodes to. No file is worth the ambiguity.
* backslashes: a legal POSIX file name byte, but a separator to anything that later maps
  the same URL onto Windows or a Windows-minded tool; refusing it costs nothing.
* control characters (again; the normaliser refuses them already).
* any segment starting with ``.``: ``.env``, ``.git/``, ``.htpasswd``, editor swap files,
  and also ``.well-known``. Hidden files are never served by a static rule; an operator
  who needs ``/.well-known/acme-challenge/`` gives it its own rule with that literal
  prefix (the prefix itself is the operator's text and is not checked, only what the
  client adds below it).

Symlinks are the one escape a string check cannot see: the real path of a file found is
compared with the real path of the root, unless the rule sets ``allow_symlinks``. The root
itself may be a symlink (``/srv/app/current -> releases/42`` deployments): its real path
is recomputed whenever ``stat(root)`` shows another directory, so a deploy that flips the
link is followed without a reload. This runs only when a file is (re)resolved, never on a
cache hit: a hit has just matched the file's ``(st_dev, st_ino, ...)``, which is the very
file that passed the check.

Every refusal is a plain ``None``: the handler answers 404 and never says why or where.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["Root", "url_prefix"]

# Below the prefix: an encoded slash (kept as text by the normaliser), a backslash,
# ASCII control characters, a segment starting with "." or an empty segment.
_REFUSED = re.compile(r"%2f|\\|[\x00-\x1f\x7f]|/\.|//", re.IGNORECASE)


def url_prefix(pattern: str) -> str:
    """The literal URL prefix a rule strips before mapping a path onto its root.

    It is the pattern's literal segments before the first one holding a ``*``:
    ``/static/**`` -> ``/static`` (Django's STATIC_ROOT has no ``static/`` level),
    ``/assets/*.css`` -> ``/assets``, ``/**`` -> ``""``. A pattern without any glob names
    one file, whose folder is the prefix: ``/favicon.ico`` -> ``""`` (so the file is
    ``<root>/favicon.ico``), ``/a/robots.txt`` -> ``/a``.
    """
    segments = pattern.split("/")[1:]
    literal: list[str] = []
    for segment in segments:
        if "*" in segment:
            return "/" + "/".join(literal) if literal else ""
        literal.append(segment)
    parent = literal[:-1]
    return "/" + "/".join(parent) if parent else ""


class Root:
    """A static rule's folder: maps URL paths to file paths and checks where files are."""

    __slots__ = ("_real", "_real_key", "allow_symlinks", "path", "prefix")

    def __init__(self, root: Path, prefix: str, allow_symlinks: bool) -> None:
        text = os.path.normpath(os.fspath(root))
        # Concatenation, never os.path.join: a relative part starts with "/" and join
        # would silently discard the root.
        self.path = "" if text == "/" else text
        self.prefix = prefix
        self.allow_symlinks = allow_symlinks
        self._real = ""
        self._real_key: tuple[int, int] | None = None

    def relative(self, url_path: str) -> str | None:
        """The part of ``url_path`` below the prefix ("" or "/..."), or None if refused."""
        prefix = self.prefix
        if not url_path.startswith(prefix):
            return None
        rel = url_path[len(prefix) :]
        if rel and rel[0] != "/":
            return None  # "/staticfoo" under "/static" (the router never sends it)
        if _REFUSED.search(rel) is not None:
            return None
        return rel

    def file_path(self, rel: str) -> str:
        """The file path for a relative part returned by :meth:`relative`."""
        return (self.path + rel) if rel else (self.path or "/")

    def contains(self, file_path: str) -> bool:
        """Whether ``file_path`` (which exists) really lies inside the root.

        Always true with ``allow_symlinks``. Otherwise symlinks are resolved and the
        result must be the root or below it; any error counts as outside.
        """
        if self.allow_symlinks:
            return True
        real_root = self._real_root()
        if real_root is None:
            return False
        try:
            real = os.path.realpath(file_path, strict=True)
        except (OSError, ValueError):
            return False
        if real_root == "/":
            return True
        return real == real_root or real.startswith(real_root + "/")

    def _real_root(self) -> str | None:
        """The root's real path, recomputed only when the root is another directory."""
        try:
            st = os.stat(self.path or "/")
        except (OSError, ValueError):
            return None
        key = (st.st_dev, st.st_ino)
        if key != self._real_key:
            try:
                self._real = os.path.realpath(self.path or "/", strict=True)
            except (OSError, ValueError):
                return None
            self._real_key = key
        return self._real
