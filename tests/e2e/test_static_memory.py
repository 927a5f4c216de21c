"""Large static downloads are zero-copy: worker memory stays flat under many slow clients."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.support.server import BextProcess, config

GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024


def test_memory_flat_while_50_slow_clients_download_1gb(
    start_bext: Callable[..., BextProcess], tmp_path: Path
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        f.truncate(GiB)  # sparse: 1 GiB of zeros without 1 GiB of disk
    routes = f'[[route_rules]]\npattern = "/media/**"\nrender = "static"\nroot = "{root}"\n'
    server = start_bext(config(routes, workers=1))
    worker = psutil.Process(server.worker_pids()[0])
    baseline = worker.memory_info().rss
    clients = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /media/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        clients.append(sock)
    received = [0] * len(clients)
    peak = baseline
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # every client reads a little, slowly
        for index, sock in enumerate(clients):
            sock.settimeout(5)
            received[index] += len(sock.recv(16384))
        peak = max(peak, worker.memory_info().rss)
        time.sleep(0.02)
    for sock in clients:
        sock.close()
    assert all(count > 256 * 1024 for count in received)  # all of them were being served
    assert sum(received) < 50 * GiB  # nobody was allowed to finish: they are slow
    assert peak - baseline < 16 * MiB, (baseline, peak)
    os.truncate(root / "big.bin", 0)
