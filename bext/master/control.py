"""The control socket: how ``bext reload`` / ``status`` / ``stop`` reach a running master.

A Unix stream socket served from the master's own loop (no thread): a client connects,
sends one command line, reads one reply and the connection closes. Signals can do most of
this too (``kill -HUP``), but only a reply can carry a refused reload's reason back to
``bext reload`` so it can exit non-zero with the message.

The default path is derived from the configuration file's absolute path, so ``bext reload
-c FILE`` finds the master started with ``bext run -c FILE`` without more settings.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

MAX_COMMAND = 256


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

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, str] | None:
        """One pending client and its command, or None (nothing usable pending)."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        conn.settimeout(2.0)  # the client sends its command right away
        try:
            data = conn.recv(MAX_COMMAND)
        except OSError:
            conn.close()
            return None
        return conn, data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        self.sock.close()
        try:
            if self.path.stat().st_ino == self._inode:  # not a successor's socket
                self.path.unlink()
        except OSError:
            pass

    def close_inherited(self) -> None:
        """In a forked worker: drop the fd without removing the master's socket file."""
        self.sock.close()


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
