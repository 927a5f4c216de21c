"""The master process: owns the listening sockets, forks and supervises workers.

It never serves a request and never runs threads or an event loop (ARCHITECTURE.md,
decision 2): one blocking loop in :mod:`bext.master.arbiter` does everything.
"""
