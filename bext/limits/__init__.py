"""Limits per client and per worker: request rates and connections.

* :mod:`bext.limits.rate`: ``[limits.NAME]``: the shared GCRA table, and the compiled
  limit a route rule carries (``429`` with ``Retry-After``), checked right after routing.
* :mod:`bext.limits.keys`: what a limit counts by (the client address after
  ``trusted_proxies``, or a header), hashed before it reaches shared memory.
* :mod:`bext.limits.connections`: a worker's connection admission (``max_connections``
  with :mod:`bext.worker.accept`, ``max_connections_per_ip`` with
  :mod:`bext.shm.peers`).
* :mod:`bext.limits.fds`: the open files limit, raised at start and checked.
* :mod:`bext.limits.throttle`: "once per interval" for the log lines all of these write.
"""
