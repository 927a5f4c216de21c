"""The reverse proxy: bext's main job, forwarding requests to Gunicorn / Uvicorn.

``handler.py`` is the pipeline handler; it picks a server from ``balancer.py``, borrows a
keep-alive connection from ``pool.py``, writes the request head built by ``headers.py`` and
streams the response back through a ``spill.py`` buffer, so a slow client never holds an
upstream worker.
"""
