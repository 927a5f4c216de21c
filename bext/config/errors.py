"""The one error a bad configuration produces.

A config file is edited by hand, often on a server over SSH, and every round trip of
"edit, run `bext check`, read one error, edit again" costs minutes. So the loader behaves
like a compiler: it collects every problem it can find in one pass and raises a single
`ConfigError` carrying all of them, each as `"key.path: reason"` so the operator can jump
straight to the offending line.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence

__all__ = ["ConfigError", "did_you_mean", "quote"]


class ConfigError(Exception):
    """A configuration that bext refuses to run, with every problem found in it.

    `problems` holds one `"key.path: reason"` string per problem; `source` names where the
    config came from (a file path, or `"<string>"` for configs built in memory) and prefixes
    every line of `str(error)`, the way compilers prefix diagnostics with the file name.
    """

    def __init__(self, problems: Sequence[str], source: str = "<string>") -> None:
        self.problems: list[str] = list(problems)
        self.source: str = source
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


def quote(text: str) -> str:
    """Quote a user-supplied string for a message.

    JSON quoting escapes CR, LF and other control characters, so a hostile or broken value
    cannot forge extra lines in the error output or the log.
    """
    return json.dumps(text, ensure_ascii=False)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return `' (did you mean "x"?)'` for the closest candidate, or `""` if none is close.

    Most config mistakes are typos of a known name; naming the intended one turns a puzzle
    into a one-character fix.
    """
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not matches:
        return ""
    return f" (did you mean {quote(matches[0])}?)"
