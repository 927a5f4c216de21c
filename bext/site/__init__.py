"""`bext site autoconfigure`: detect the framework of a project tree and write its config.

* `catalog` loads the framework rules shipped in ``bext/catalog/frameworks.toml``;
* `deps` reads dependency names from requirements files, pyproject.toml and Pipfile;
* `django_settings` reads STATIC_*/MEDIA_* from a settings module with `ast` (never
  importing it);
* `appserver` finds the Gunicorn/Uvicorn bind address named in the project;
* `detect` applies the rules to a directory; `render` turns a detection into the config
  dict written with tomli-w.
"""

from bext.site.catalog import FrameworkRule, load_catalog
from bext.site.detect import DetectError, Detection, detect
from bext.site.render import render_config, render_toml

__all__ = [
    "DetectError",
    "Detection",
    "FrameworkRule",
    "detect",
    "load_catalog",
    "render_config",
    "render_toml",
]
