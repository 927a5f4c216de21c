"""A scriptable HTTP/1.1 upstream for fault injection (hang, die mid-body, close early).

Real Gunicorn/Uvicorn cover the normal paths; faults need byte-level control, so this
threaded socket server answers by path:

* ``/ok`` and anything else: ``200`` with body ``ok <port>``, keep-alive
* ``/hang``: reads the request, never answers
* ``/die``: announces 100000 bytes, sends 1000, closes
* ``/close``: reads the request, closes without a byte
* ``/interim``: ``103 Early Hints`` and the final ``200`` in one write
* ``/interim-split``: ``100 Continue``, a pause, then the final ``200``
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class FakeUpstream:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.heads_seen = 0
        """Request heads received, counted before their bodies arrive."""
        self.connections = 0
        self.hangups = 0
        """``/hang`` requests whose connection the proxy closed (it stopped waiting)."""
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.close_after_response = False
        self.idle_timeout: float | None = None
        """Close a keep-alive connection idle this long (as Gunicorn/Uvicorn do)."""

    def start(self) -> FakeUpstream:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(30)
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    conn.settimeout(self.idle_timeout if not buffer else 30)
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        return  # idle keep-alive timeout: close
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                with self._lock:
                    self.heads_seen += 1
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                with self._lock:
                    self.requests.append(head)
                path = head.split(b" ")[1]
                if path.startswith(b"/hang"):
                    conn.recv(1)  # until the peer gives up
                    with self._lock:
                        self.hangups += 1
                    return
                if path.startswith(b"/close"):
                    return
                if path.startswith(b"/die"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"d" * 1000)
                    return
                body = b"ok %d" % self.port
                final = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
                if path.startswith(b"/interim-split"):
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    time.sleep(0.2)
                elif path.startswith(b"/interim"):
                    final = (
                        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + final
                    )
                conn.sendall(final)
                if self.close_after_response:
                    return
        except OSError:
            return
        finally:
            conn.close()


@contextmanager
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


def free_port() -> int:
    """A loopback port with nothing listening (for "upstream down")."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port
