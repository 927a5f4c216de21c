"""The sans-IO HTTP caching policy of bext's shared edge cache (RFC 9111).

This package decides; it never stores, reads, sleeps or awaits. Like h11 it is made of small
immutable dataclasses and pure functions over header lists
(:data:`bext.protocol.events.Headers`), one concept per module:

* :mod:`.directives` -- ``Cache-Control`` (RFC 9111 §5.2), ``Pragma`` (§5.4) and the
  edge-only ``Surrogate-Control``.
* :mod:`.dates` -- HTTP-date parsing and formatting (RFC 9110 §5.6.7).
* :mod:`.storable` -- may a response be stored at all (RFC 9111 §3, §3.1, §3.5).
* :mod:`.freshness` -- freshness lifetime, age and whether a stored response can answer a
  request (§4.2, RFC 5861).
* :mod:`.vary` -- the secondary cache key (§4.1).
* :mod:`.validation` -- conditional requests and freshening with a 304 (§4.3).
* :mod:`.invalidation` -- invalidation by unsafe methods (§4.4).
* :mod:`.status` -- the ``Cache-Status`` field (RFC 9211).
* :mod:`.tags` -- ``Cache-Tag`` / ``Surrogate-Key`` parsing and edge-only field stripping.

The store, the request and response phases that call these functions, and the admin
invalidation API come later (issue 15) and are not part of this package.
"""

from __future__ import annotations
