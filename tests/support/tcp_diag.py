"""Which TCP connections are open to a local port, and how many at once over a while.

One netlink ``sock_diag`` dump asks the kernel for established IPv4 sockets only, so it
stays fast on a machine with thousands of TIME_WAIT sockets (reading ``/proc/net/tcp``, or
``psutil.net_connections``, takes tens of milliseconds there). A dump is still not an
atomic snapshot: a connection that closes while another opens may show up in the same
dump as its successor. :class:`ConnectionSampler` therefore counts a connection as open
only in the samples strictly between the first and the last that saw it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_ESTABLISHED = 1


def established_to(port: int) -> set[int]:
    """Established IPv4 connections whose server end is ``port``, by socket cookie (unique
    for the socket's life, unlike the client port, which loopback reuses quickly)."""
    request = struct.pack(
        "=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED
    ) + bytes(48)  # inet_diag_req_v2; the socket id (48 bytes) matches anything
    header = struct.pack(
        "=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    found: set[int] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5)
        nl.send(header + request)
        for _ in range(10_000):  # each recv carries many sockets; a dump ends with DONE
            data = nl.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag dump failed")
                # inet_diag_msg: family, state, timer, retrans (4 bytes), then the socket id:
                # sport, dport (network order), src, dst (16 bytes each), interface, cookie
                (sport,) = struct.unpack_from("!H", data, offset + 16 + 4)
                if sport == port:
                    found.add(struct.unpack_from("=Q", data, offset + 16 + 44)[0])
                offset += (length + 3) & ~3
    raise OSError("sock_diag dump did not end")


class ConnectionSampler:
    """Samples ``established_to(port)`` in a thread while a ``with`` block runs.

    ``peak`` is the most connections open at once, counting each connection only in the
    samples strictly inside the span it was seen in (see the module docstring).
    """

    def __init__(self, port: int, interval: float = 0.002, limit: float = 300.0) -> None:
        self.port = port
        self.interval = interval
        self.limit = limit
        self.samples: list[set[int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.samples.append(established_to(self.port))
            time.sleep(self.interval)

    @property
    def peak(self) -> int:
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for index, sample in enumerate(self.samples):
            for cookie in sample:
                first.setdefault(cookie, index)
                last[cookie] = index
        counts = [0] * len(self.samples)
        for cookie, start in first.items():
            for index in range(start + 1, last[cookie]):
                counts[index] += 1
        return max(counts, default=0)
