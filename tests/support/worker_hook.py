"""A test-only hook into forked workers, loaded as ``sitecustomize`` from PYTHONPATH.

Masters started by a test that uses :func:`worker_hook` import it before ``bext run``
picks up ``worker_main``, so every worker they fork runs through it:

* while ``BEXT_TEST_HOLD_FILE`` exists, workers of generation 2 and later wait before they
  serve: they never report ready, so a reload times out;
* while ``BEXT_TEST_CRASH_FILE`` exists, a worker exits with code 1 as it starts (a crash
  loop, whatever the configuration).

Production code has no such hook; this file only ever runs under the test suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HOOK = """\
import os

_hold = os.environ.get("BEXT_TEST_HOLD_FILE")
_crash = os.environ.get("BEXT_TEST_CRASH_FILE")
if _hold or _crash:
    import time

    import bext.worker.main as _main

    _serve = _main.worker_main

    def _hooked_worker_main(spec):
        if _crash and os.path.exists(_crash):
            return 1
        while _hold and spec.generation > 1 and os.path.exists(_hold):
            time.sleep(0.02)
        return _serve(spec)

    _main.worker_main = _hooked_worker_main
"""


def worker_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Install the hook for masters started from now on; returns (hold file, crash file).

    Neither file exists yet: a test creates one to hold or crash workers, and removes it
    to let them go.
    """
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    paths = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("BEXT_TEST_HOLD_FILE", str(tmp_path / "hold"))
    monkeypatch.setenv("BEXT_TEST_CRASH_FILE", str(tmp_path / "crash"))
    return tmp_path / "hold", tmp_path / "crash"
