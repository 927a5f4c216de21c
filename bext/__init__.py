"""bext: an edge server for Python web apps."""

__version__ = "0.1.0"
