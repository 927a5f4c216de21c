"""RLIMIT_NOFILE at start: the soft limit goes up to the hard one, and a limit below what
``max_connections`` needs is reported. Runs in a child process: limits are per process,
and lowering the hard limit cannot be undone."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, resource, sys
from bext.config.schema import ServerConfig
from bext.limits.fds import raise_open_files_limit
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
soft = raise_open_files_limit(ServerConfig(max_connections=int(sys.argv[3]), workers=2))
print("soft", soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def run(soft: int, hard: int, max_connections: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(soft), str(hard), str(max_connections)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    out = run(256, 1024, 500)
    assert "soft 1024 1024" in out
    assert "WARNING" not in out


def test_a_hard_limit_below_max_connections_is_reported() -> None:
    out = run(256, 512, 1000)
    assert "soft 512 512" in out
    assert (
        "WARNING open files limit (RLIMIT_NOFILE) is 512, hard limit 512: each worker "
        "may need 1064 (server.max_connections = 1000 plus 64)" in out
    )
