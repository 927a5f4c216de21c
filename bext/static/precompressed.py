"""Precompressed variants (``app.css.br``, ``app.css.gz``) and Accept-Encoding.

Build pipelines (``django-compressor``, WhiteNoise's ``compress_static``, bundler
plugins, ``brotli -k``) write maximum-quality compressed copies beside each file once,
so serving them costs nothing per request while on-the-fly compression could only
afford a fast, weaker level. A variant is served when the client accepts its coding.

Which variant a client accepts comes from :mod:`bext.http.accept_encoding`, the one
Accept-Encoding parser, shared with the compression phase.
"""

from __future__ import annotations

from bext.http.accept_encoding import IDENTITY, preference

__all__ = ["IDENTITY", "VARIANTS", "preference"]

VARIANTS: tuple[tuple[str, str], ...] = (("br", ".br"), ("gzip", ".gz"))
"""(content-coding, file suffix), most preferred first."""
