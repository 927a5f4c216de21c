"""A deliberately small HTTP/1.1 client over raw sockets, for byte-exact protocol tests.

Real clients (curl, httpx) cannot send malformed requests or inspect framing; this one sends
exactly the bytes it is given and parses responses strictly enough to notice framing bugs.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    version: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class RawConnection:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed mid-line: {self.buffer!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self, head_only: bool = False) -> RawResponse:
        """Read one response; ``head_only`` for responses to HEAD (no body expected)."""
        status_line = self._line().decode("latin-1")
        version, status, reason = ([*status_line.split(" ", 2), ""])[:3]
        response = RawResponse(int(status), reason, version=version)
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            response.headers.append((name, value.strip()))
        if head_only or response.status in (204, 304) or 100 <= response.status < 200:
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            parts = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                parts.append(self._exactly(size))
                assert self._exactly(2) == b"\r\n"
            response.body = b"".join(parts)
        elif length is not None:
            response.body = self._exactly(int(length))
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def is_closed(self, wait: float = 2.0) -> bool:
        """True if the server closes the connection within ``wait``; keeps what it sent."""
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buffer += data


def exchange(port: int, data: bytes, timeout: float = 5.0) -> RawResponse:
    """Send ``data`` on a fresh connection and read one response."""
    with RawConnection(port, timeout=timeout) as conn:
        conn.send(data)
        return conn.read_response()


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still accepts connections")
