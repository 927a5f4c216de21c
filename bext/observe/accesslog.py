"""The access log: combined log format (plus request time) or JSON lines.

After the combined format's fields and the request time, a line carries ``key=value``
fields for what bext knows of the request (JSON: the same keys): ``id`` (the request id,
as echoed in ``X-Request-ID``, on error pages and in the WAF's audit log), ``trace`` (the
W3C trace id sent upstream), ``upstream`` (the server that answered) and ``upstream_time``
(seconds to its response head), ``cache`` (``HIT``, ``MISS``, ``STALE``, ``REVALIDATED``,
``BYPASS``) and ``waf`` (``PASS``, ``DETECT``, ``BLOCK``). The standard prefix is
untouched, so tools that parse the combined format still do.

Lines are buffered per worker and written in batches no larger than ``PIPE_BUF``, so lines
from several workers sharing one stdout pipe or one ``O_APPEND`` file never interleave, and
a busy worker does one ``write`` per batch rather than one per request.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Final

_PIPE_BUF: Final = 4096
_FLUSH_LINES: Final = 64
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\\x7f-\xff]')


def _escape(value: str) -> str:
    """nginx-style escaping: quotes, backslashes and non-printables become ``\\xHH``."""
    if not _NEEDS_ESCAPE.search(value):
        return value
    return _NEEDS_ESCAPE.sub(lambda m: f"\\x{ord(m.group()):02X}", value)


class AccessLog:
    def __init__(self, target: str, fmt: str = "combined") -> None:
        self.enabled = target != "off"
        self._target = target
        self._json = fmt == "json"
        self._lines: list[str] = []
        self._fd = -1
        self._own_fd = False
        self._stamp_second = -1
        self._stamp = ""
        if self.enabled:
            self.reopen()

    def reopen(self) -> None:
        """(Re)open the target file: after logrotate moved it (SIGUSR1)."""
        if self._target == "stdout":
            self._fd = sys.stdout.fileno()
        elif self._target == "stderr":
            self._fd = sys.stderr.fileno()
        else:
            new_fd = os.open(self._target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if self._own_fd:
                os.close(self._fd)
            self._fd = new_fd
            self._own_fd = True

    def close(self) -> None:
        """Flush, then close the file this object opened; stdout and stderr stay open.

        The master closes its copy when it drops a generation (its workers have their
        own). Lines logged afterwards are discarded quietly, until :meth:`reopen`.
        """
        self.flush()
        if self._own_fd:
            self._own_fd = False
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._stamp

    def log(
        self,
        client: str,
        request_line: str,
        status: int,
        sent: int,
        referer: bytes | None,
        user_agent: bytes | None,
        duration: float,
        fields: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if not self.enabled:
            return
        ref = referer.decode("latin-1") if referer else "-"
        agent = user_agent.decode("latin-1") if user_agent else "-"
        if self._json:
            document: dict[str, object] = {
                "time": self._timestamp(),
                "remote_addr": client,
                "request": request_line,
                "status": status,
                "bytes_sent": sent,
                "referer": ref,
                "user_agent": agent,
                "request_time": round(duration, 3),
            }
            for key, value in fields:
                document[key] = value
            line = json.dumps(document, ensure_ascii=True)
        else:
            line = (
                f'{client} - - [{self._timestamp()}] "{_escape(request_line)}" {status} {sent} '
                f'"{_escape(ref)}" "{_escape(agent)}" {duration:.3f}'
            )
            for key, value in fields:
                line += f" {key}={_escape(value)}"
        self._lines.append(line)
        if len(self._lines) >= _FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines = self._lines
        self._lines = []
        batch: list[bytes] = []
        size = 0
        for text in lines:
            data = (text + "\n").encode("utf-8", "replace")
            if size + len(data) > _PIPE_BUF and batch:
                self._write(b"".join(batch))
                batch, size = [], 0
            batch.append(data)
            size += len(data)
        if batch:
            self._write(b"".join(batch))

    def _write(self, data: bytes) -> None:
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError:  # BlockingIOError included: a stuck log reader must never stall
            pass  # request handling, nor a full disk crash the worker
