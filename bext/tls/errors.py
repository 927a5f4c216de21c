"""The error a TLS setup fails with: light to import (no cryptography), so the master can
name it whether or not the configuration has a TLS listener."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TLSSetupError"]


class TLSSetupError(Exception):
    """The certificates cannot be served. `problems` has one line per problem, each
    starting with the config key it is about, so `bext check`/`run` can print them as is."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
