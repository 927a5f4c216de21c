"""`bext new`: project templates shipped inside the package (``bext/templates/``)."""

from bext.starter.scaffold import (
    DEFAULT_TEMPLATE,
    ScaffoldError,
    Template,
    create_project,
    list_templates,
    package_name,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "ScaffoldError",
    "Template",
    "create_project",
    "list_templates",
    "package_name",
]
