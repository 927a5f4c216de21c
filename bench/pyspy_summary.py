"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) of a bext worker.

Usage: ``python bench/pyspy_summary.py PROFILE.txt [--top 15]``

Each line of a raw profile is ``frame;frame;...;leaf COUNT`` with frames like
``H1Connection._send_simple (bext/worker/h1_connection.py:313)`` (or, with ``--native``,
``write (libc.so.6)`` and uvloop's ``UVStream_write (loop.c:110085)``). Three views:

* categories: each sample is charged to the deepest frame matching a known category
  (parser, routing, response head, socket write, timers, event loop, ...), which answers
  "where does the time go" in one table;
* self time per function and per source line (the leaf frame);
* inclusive time per function (samples with the function anywhere on the stack);
* with ``--native``: time in libc (``write``, ``read``, ...) by the Python line that made
  the call, which tells e.g. the response writes from the upstream writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (category, substrings): checked leaf-first; the first frame matching any substring of
# any category decides, categories in this order for the same frame.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event loop idle (epoll wait)", ("epoll_wait", "epoll_pwait")),
    ("syscalls (libc: write/read/accept)", ("(libc.so", "(libpthread")),
    (
        "HTTP parsing (httptools + our callbacks, check_head)",
        ("HttptoolsParser.", "check_head", "(httptools/", "parser.c", "llhttp"),
    ),
    (
        "routing + path normalisation (Pipeline.handle)",
        (
            "Pipeline.handle",
            "Router.",
            "normalize_path",
            "split_target",
            "HostRouter",
            "PathRouter",
            "respond (",
        ),
    ),
    ("Request object construction", ("Request.__init__",)),
    ("response head serialisation", ("response_head", "preamble", "date_line", "status_line")),
    ("timeout bookkeeping (_arm/_on_timer)", ("H1Connection._arm", "H1Connection._on_timer")),
    ("response send (_send_simple incl. transport.write)", ("H1Connection._send_simple",)),
    (
        "response send, streamed (_send_streamed incl. transport.write per part)",
        ("H1Connection._send_streamed",),
    ),
    # The reverse proxy (bext/proxy/*): the upstream side of a proxied request.
    ("proxy: request head to upstream (upstream_request_head)", ("upstream_request_head",)),
    (
        "proxy: send to upstream (UpstreamConnection.begin incl. write)",
        ("UpstreamConnection.begin",),
    ),
    (
        "proxy: upstream response (UpstreamConnection callbacks, parsing, timer)",
        ("UpstreamConnection.", "proxy/connection.py"),
    ),
    ("proxy: response headers for the client", ("client_response_headers",)),
    ("proxy: connection pool (acquire/release)", ("ConnectionPool.", "proxy/pool.py")),
    ("proxy: response buffer (SpillBuffer)", ("SpillBuffer.", "proxy/spill.py")),
    (
        "proxy: handler (ProxyHandler.proxy/_exchange, _relay)",
        ("ProxyHandler.", "_relay (", "proxy/handler.py", "proxy/balancer.py"),
    ),
    (
        "compression phase (Compressor.apply, _compress_later)",
        ("Compressor.", "_compress_later", "compress/"),
    ),
    # render = "static" (bext/static/*): lookup, the per-request os.stat, headers.
    (
        "static handler (StaticHandler incl. its os.stat, file cache)",
        ("StaticHandler.", "static/filecache.py", "static/representation.py"),
    ),
    (
        "response send, file (_send_file/_sendfile: os.sendfile)",
        ("H1Connection._send_file", "H1Connection._sendfile", "H1Connection._writable"),
    ),
    ("connection code (H1Connection other)", ("H1Connection.",)),
    # Without --native, time in uvloop's C code (epoll, recv, callback dispatch) has no
    # Python frame of its own and is charged to the outermost one, asyncio's Runner.run.
    (
        "uvloop/libuv C code (epoll, recv, dispatch)",
        ("(loop.c", "(stream.c", "(core.c", "(linux.c", "(uvloop/", "(libuv", "Runner.run ("),
    ),
)
OTHER = "other (interpreter, asyncio, startup)"


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str
    line: int | None

    @property
    def function(self) -> str:
        return f"{self.func} ({Path(self.file).name})" if self.file else self.func

    @property
    def location(self) -> str:
        return f"{self.function}:{self.line}" if self.line is not None else self.function


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    if match is None:
        return Frame(text, "", None)
    line = match.group("line")
    return Frame(match.group("func"), match.group("file"), int(line) if line else None)


def parse_raw(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for raw in lines:
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for category, needles in CATEGORIES:
            if any(needle in frame for needle in needles):
                return category
    return OTHER


@dataclass(frozen=True, slots=True)
class Summary:
    total: int
    categories: list[tuple[str, int]]
    self_functions: list[tuple[str, int]]
    self_lines: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]
    syscall_callers: list[tuple[str, int]]
    """libc leaf samples by ``libc function <- deepest Python frame``: native profiles only."""

    def as_dict(self, top: int) -> dict[str, object]:
        def pct(rows: list[tuple[str, int]]) -> list[dict[str, object]]:
            return [
                {"name": name, "samples": n, "percent": round(100.0 * n / self.total, 1)}
                for name, n in rows[:top]
            ]

        return {
            "samples": self.total,
            "categories": pct(self.categories),
            "self_functions": pct(self.self_functions),
            "self_lines": pct(self.self_lines),
            "inclusive": pct(self.inclusive),
            "syscall_callers": pct(self.syscall_callers),
        }

    def render(self, top: int) -> str:
        out: list[str] = [f"{self.total} samples"]
        for title, rows in (
            ("where the time goes (deepest known frame)", self.categories),
            ("self time by function", self.self_functions[:top]),
            ("self time by line", self.self_lines[:top]),
            ("inclusive time by function", self.inclusive[:top]),
            ("libc time by calling Python line (--native)", self.syscall_callers[:top]),
        ):
            if not rows:
                continue
            out.append(f"\n{title}:")
            for name, n in rows:
                out.append(f"  {100.0 * n / self.total:5.1f}%  {n:6d}  {name}")
        return "\n".join(out)


def summarise(stacks: list[tuple[list[str], int]]) -> Summary:
    total = sum(n for _, n in stacks)
    categories: Counter[str] = Counter()
    self_functions: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    syscall_callers: Counter[str] = Counter()
    for frames, n in stacks:
        categories[categorise(frames)] += n
        leaf = parse_frame(frames[-1])
        self_functions[leaf.function] += n
        self_lines[leaf.location] += n
        for function in {parse_frame(frame).function for frame in frames}:
            inclusive[function] += n
        if "(libc.so" in frames[-1]:
            caller = next(
                (parse_frame(f).location for f in reversed(frames) if ".py:" in f), "no Python"
            )
            syscall_callers[f"{leaf.func} <- {caller}"] += n
    return Summary(
        total=max(total, 1),
        categories=categories.most_common(),
        self_functions=self_functions.most_common(),
        self_lines=self_lines.most_common(),
        inclusive=inclusive.most_common(),
        syscall_callers=syscall_callers.most_common(),
    )


def summarise_file(path: Path) -> Summary:
    with path.open(encoding="utf-8", errors="replace") as f:
        return summarise(parse_raw(f))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = parser.parse_args(argv)
    print(summarise_file(args.profile).render(args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
