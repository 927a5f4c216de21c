"""Static and media files: ``render = "static"`` rules (STATIC_ROOT, MEDIA_ROOT).

What an operator can rely on (the modules say why):

* **URL -> file** (:mod:`.resolve`): the rule's literal prefix is stripped, so
  ``/static/**`` serves ``/static/css/a.css`` from ``<root>/css/a.css`` (Django's
  STATIC_ROOT has no ``static/`` level). The root is ``root`` or, by Django convention,
  ``{app_dir}/staticfiles`` for ``/static/**`` and ``{app_dir}/media`` for ``/media/**``.
  A pattern without a glob (``/favicon.ico``) serves that name from its root.
* **Refused with 404**, never saying why or where: hidden segments (``.env``, ``.git/``,
  also ``.well-known``: give ACME its own rule with that literal prefix), ``%2F``,
  backslashes, control characters, symlinks leading out of the root (unless
  ``allow_symlinks = true``), directories (unless ``index = "index.html"``; then
  ``/dir`` redirects 301 to ``/dir/``), FIFOs, devices and sockets. Only GET and HEAD
  (405 with ``Allow: GET, HEAD`` otherwise).
* **Headers** (:mod:`.representation`): Content-Type from a fixed table (:mod:`.mime`),
  strong ETag ``"<mtime_ns hex>-<size hex>"``, Last-Modified, Accept-Ranges,
  ``X-Content-Type-Options: nosniff``, Cache-Control (:mod:`.cache_control`: a year and
  ``immutable`` for content-hashed names, else ``static.max_age`` or ``no-cache``). The
  rule's ``headers`` replace same-named fields on 200/206/304, not on errors.
* **Conditional requests and ranges** (:mod:`.conditional`, :mod:`.ranges`,
  :mod:`.multipart`): If-Match, If-Unmodified-Since (412), If-None-Match,
  If-Modified-Since (304), Range with single and multiple ranges (206, multipart/byteranges),
  416 with ``Content-Range: bytes */SIZE``, If-Range.
* **Precompressed variants** (:mod:`.precompressed`): ``file.br`` / ``file.gz`` beside the
  file, served by Accept-Encoding with their own ETag and ``Vary: Accept-Encoding``;
  ignored when older than the file.
* **Freshness and speed** (:mod:`.handler`, :mod:`.filecache`): one ``stat`` per request
  revalidates the cached entry; small files are answered with a prebuilt Response from
  a memory LRU bounded by ``static.memory_cache``; larger ones go out with ``sendfile``.
"""
