"""Types the master and the workers share.

The master (:mod:`bext.master`) builds these and a worker (:mod:`bext.worker`) starts from
them after ``fork()``. Both may import this package; it imports neither, so nothing in
``bext.worker`` ever depends on the master's code.
"""
