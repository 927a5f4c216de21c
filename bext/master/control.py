"""The control socket: how ``bext reload`` / ``status`` / ``stop`` / ``cache purge`` reach a
running master.

A Unix stream socket served from the master's own loop (no thread): a client connects,
sends one command line, reads one reply and the connection closes. Signals can do most of
this too (``kill -HUP``), but only a reply can carry a refused reload's reason back to
``bext reload`` so it can exit non-zero with the message.

Nothing here blocks the master: :meth:`ControlServer.fileno` is an epoll set holding the
listening socket and the clients whose command line is not complete yet, so the master's
``select`` wakes for a new client *and* for the next bytes of one that is still typing,
and every read takes only what is already there. A client that connects and says nothing
costs one slot, never the master's time: at most :data:`MAX_PENDING` of them are kept (the
oldest goes first), and one older than :data:`PENDING_TIMEOUT` is dropped the next time
the control socket stirs.

The default path is derived from the configuration file's absolute path, so ``bext reload
-c FILE`` finds the master started with ``bext run -c FILE`` without more settings.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from pathlib import Path

MAX_COMMAND = 66 * 1024
"""The longest command line: ``cache-purge`` carries a JSON body of up to 64 KiB (the
admin endpoint's limit, :data:`bext.cache.purge.MAX_BODY_BYTES`); a longer line is refused
with an error reply, never cut short and run."""
MAX_PENDING = 16
"""Clients connected without a complete command line yet; the oldest goes beyond this."""
PENDING_TIMEOUT = 10.0
"""Seconds a client may take to send its command line."""
REPLY_TIMEOUT = 0.5
"""How long a reply may wait for room in the client's socket buffer (a reply is small)."""


def runtime_dir() -> Path:
    """Where the control socket lives unless ``server.control_socket`` says otherwise."""
    for candidate in (os.environ.get("RUNTIME_DIRECTORY"), os.environ.get("XDG_RUNTIME_DIR")):
        if candidate:
            return Path(candidate.split(":")[0])
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        return Path("/run/bext")
    return Path("/tmp") / f"bext-{os.geteuid()}"


def default_socket_path(config_path: Path) -> Path:
    digest = hashlib.sha256(str(config_path.absolute()).encode()).hexdigest()[:16]
    return runtime_dir() / f"bext-{digest}.sock"


class ControlServer:
    """The listening side, owned by the master."""

    def __init__(self, path: Path, take_over: bool = False) -> None:
        """Listen on ``path``; ``take_over`` replaces the old master's socket (upgrade)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or path.is_symlink():
            if not take_over and _answering(path):
                raise OSError(f"another bext master already listens on {path}")
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self._inode = path.stat().st_ino
        self.sock.listen(8)
        self.sock.setblocking(False)
        self._poll = select.epoll()
        self._poll.register(self.sock.fileno(), select.EPOLLIN)
        self._pending: dict[int, _Pending] = {}

    def fileno(self) -> int:
        """Readable when a client connects or a connected one sends (an epoll set)."""
        return self._poll.fileno()

    def accept(self) -> tuple[socket.socket, str] | None:
        """A client whose command line is complete and the command, or None; never waits.

        Called when :meth:`fileno` is readable. One command per call: the epoll set is
        level-triggered, so other ready clients keep it readable for the next round.
        """
        now = time.monotonic()
        listening = self.sock.fileno()
        for fd, _ in self._poll.poll(0):
            if fd == listening:
                self._take_new(now)
                continue
            done = self._read(fd)
            if done is not None:
                return done
        self._expire(now)
        return None

    def _take_new(self, now: float) -> None:
        for _ in range(MAX_PENDING):
            try:
                conn, _ = self.sock.accept()
            except OSError:  # BlockingIOError: no more; anything else: nothing to take
                return
            conn.setblocking(False)
            if len(self._pending) >= MAX_PENDING:
                self._drop(next(iter(self._pending)))  # the oldest
            self._pending[conn.fileno()] = _Pending(conn, now)
            self._poll.register(conn.fileno(), select.EPOLLIN)

    def _read(self, fd: int) -> tuple[socket.socket, str] | None:
        pending = self._pending.get(fd)
        if pending is None:
            return None
        try:
            data = pending.conn.recv(MAX_COMMAND + 1 - len(pending.data))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            self._drop(fd)
            return None
        pending.data += data
        if data and b"\n" not in data and len(pending.data) <= MAX_COMMAND:
            return None  # more to come
        self._poll.unregister(fd)
        del self._pending[fd]
        conn = pending.conn
        if not pending.data.strip():
            conn.close()  # connected and left without a word
            return None
        conn.settimeout(REPLY_TIMEOUT)
        line, newline, _ = bytes(pending.data[: MAX_COMMAND + 1]).partition(b"\n")
        if not newline and len(line) > MAX_COMMAND:
            reply(conn, f"error: command longer than {MAX_COMMAND} bytes")
            return None
        return conn, line.decode("utf-8", "replace").strip()

    def _expire(self, now: float) -> None:
        for fd in [fd for fd, p in self._pending.items() if now - p.since > PENDING_TIMEOUT]:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        pending = self._pending.pop(fd)
        self._poll.unregister(fd)
        pending.conn.close()

    def close(self) -> None:
        self._close_fds()
        try:
            if self.path.stat().st_ino == self._inode:  # not a successor's socket
                self.path.unlink()
        except OSError:
            pass

    def close_inherited(self) -> None:
        """In a forked worker: drop the fds without removing the master's socket file."""
        self._close_fds()

    def _close_fds(self) -> None:
        for pending in self._pending.values():
            pending.conn.close()
        self._pending.clear()
        self._poll.close()
        self.sock.close()


class _Pending:
    """A client still sending its command line."""

    __slots__ = ("conn", "data", "since")

    def __init__(self, conn: socket.socket, since: float) -> None:
        self.conn = conn
        self.since = since
        self.data = bytearray()


def reply(conn: socket.socket, text: str) -> None:
    try:
        conn.sendall(text.encode() + b"\n")
    except OSError:
        pass
    finally:
        conn.close()


def send_command(path: Path, command: str, timeout: float = 60.0) -> str:
    """Client side: send ``command`` and return the one-line reply.

    Raises OSError if no master answers. The reply ends at its newline, not at EOF: the
    connection may stay open in processes the master forked meanwhile.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(command.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    return reply.decode("utf-8", "replace").rstrip("\n")


def _answering(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            probe.connect(str(path))
        return True
    except OSError:
        return False
