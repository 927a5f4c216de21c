"""`[server.http2]` reaches the wire: a real master advertises the configured SETTINGS."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperframe.frame import SettingsFrame

from tests.h2.h2client import PREFACE, RawH2
from tests.support.server import BextProcess, config

ROUTES = '[[route_rules]]\npattern = "/**"\nrespond = { status = 200, body = "ok" }\n'


def serve(tmp_path: Path, http2: str, engine: str) -> BextProcess:
    """A ``bext run`` master (a subprocess: the suite's engine goes in its config)."""
    text = config(f'[server.http2]\nengine = "{engine}"\n{http2}\n{ROUTES}', workers=1)
    # config() puts [server] first; the [server.http2] table must follow it.
    return BextProcess(tmp_path, text).start()


@pytest.fixture
def server(tmp_path: Path, h2_engine_name: str) -> Iterator[BextProcess]:
    bext = serve(
        tmp_path, 'max_concurrent_streams = 7\ninitial_window_size = "64KB"', h2_engine_name
    )
    try:
        yield bext
    finally:
        bext.stop()


def test_configured_settings_are_advertised(server: BextProcess) -> None:
    with RawH2(server.port) as client:
        client.read_until(lambda: bool(client.server_settings))
        assert client.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 7
        assert client.server_settings[SettingsFrame.INITIAL_WINDOW_SIZE] == 64 * 1024
        client.ack_settings()
        client.request(1)
        reply = client.response(1)
        assert reply.status == 200 and reply.body == b"ok"


def test_h2c_can_be_turned_off(tmp_path: Path, h2_engine_name: str) -> None:
    bext = serve(tmp_path, "h2c = false", h2_engine_name)
    try:
        with socket.create_connection(("127.0.0.1", bext.port), timeout=5) as sock:
            sock.sendall(PREFACE)
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 4"), answer[:100]  # HTTP/1.1 refuses "PRI *"
    finally:
        bext.stop()
