"""Request routing: path normalisation, glob and host matching, first-match router."""

from bext.routing.glob import GlobKind, GlobMatcher, compile_glob, validate_glob
from bext.routing.host import normalize_host
from bext.routing.path import BadPath, absolute_form_host, normalize_path, split_target
from bext.routing.router import RouteLike, Router

__all__ = [
    "BadPath",
    "GlobKind",
    "GlobMatcher",
    "RouteLike",
    "Router",
    "absolute_form_host",
    "compile_glob",
    "normalize_host",
    "normalize_path",
    "split_target",
    "validate_glob",
]
