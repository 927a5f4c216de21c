"""Issue 14, items 3, 9 and 10 on real masters: config paths, one owner per port, control.

* A NUL or control character in any path-valued key is refused with its key path by
  ``bext check`` (78, no traceback) and by ``bext reload`` (78) while the master keeps
  serving the running configuration.
* ``bext run`` refuses a port another process listens on (exit 1, the port named), with or
  without SO_REUSEPORT on the other side: two masters would silently split the traffic.
  Ports this master already holds (a reload, port 0's second address) are no conflict.
* The control socket never blocks the master: a client that connects and says nothing
  costs a slot, not the loop's time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bext.master.control import MAX_PENDING, send_command
from bext.master.listeners import BindError, bind_listeners
from bext.runtime.spec import QUIC
from tests.e2e.test_supervisor import bext_cli, get, rewrite, routes
from tests.support.server import BextProcess, config

Start = Callable[..., BextProcess]


def bext(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bext", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


# -- item 3: path-valued keys ----------------------------------------------------------------

NUL_PATHS: list[tuple[str, dict[str, object], str]] = [
    # (key, [server] settings, other tables): TOML escapes, so the file holds the bytes
    ("server.pidfile", {"pidfile": "run/a\\u0000b.pid"}, ""),
    ("server.control_socket", {"control_socket": "a\\u0000b.sock"}, ""),
    ("server.app_dir", {"app_dir": "app\\u0000"}, ""),
    ("server.tls.cert", {}, '[server.tls]\nport = 0\ncert = "c\\u0000.pem"\nkey = "k.pem"\n'),
    ("server.tls.certificates[0].key", {},
     '[server.tls]\nport = 0\ncert = "c.pem"\nkey = "k.pem"\n[[server.tls.certificates]]\n'
     'hosts = ["a.test"]\ncert = "a.pem"\nkey = "a\\u0000.key"\n'),
    ("route_rules[0].root", {},
     '[[route_rules]]\npattern = "/s/**"\nrender = "static"\nroot = "st\\u001b[1m"\n'),
    ("log.access", {}, '[log]\naccess = "logs/a\\u0000.log"\n'),
    ("log.error", {}, '[log]\nerror = "logs/e\\u0007.log"\n'),
    ("upstreams.app.servers[0].url", {},
     '[upstreams.app]\n[[upstreams.app.servers]]\nurl = "unix:/run/g\\u0000.sock"\n'
     '[[route_rules]]\npattern = "/z/**"\nproxy = "app"\n'),
]  # fmt: skip


def nul_config(server: dict[str, object], tables: str, version: int = 1) -> str:
    """A config serving ``routes(version)`` with one bad path (its tables come first)."""
    return config(tables + routes(version), workers=1, **server)


@pytest.mark.parametrize(("key", "server", "tables"), NUL_PATHS, ids=[k[0] for k in NUL_PATHS])
def test_check_refuses_nul_paths_with_the_key(
    tmp_path: Path, key: str, server: dict[str, object], tables: str
) -> None:
    path = tmp_path / "bext.config.toml"
    path.write_text(nul_config(server, tables))
    result = bext("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 78, result.stderr
    assert f"{key}: must not contain" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_reload_refuses_nul_paths_and_the_master_keeps_serving(start_bext: Start) -> None:
    server = start_bext(config(routes(1), workers=1))
    master = server.pid
    for key, settings, tables in NUL_PATHS:
        rewrite(server, nul_config(settings, tables, version=2))
        result = bext_cli(server, "reload")
        assert result.returncode == 78, (key, result.stdout, result.stderr)
        assert f"{key}: must not contain" in result.stderr, result.stderr
        assert get(server.port).body == b"v1", key  # the running configuration serves
    assert server.proc is not None and server.proc.poll() is None
    assert "Traceback" not in server.stderr()
    rewrite(server, config(routes(3), workers=1))
    assert bext_cli(server, "reload").returncode == 0
    assert get(server.port).body == b"v3" and server.pid == master


# -- item 9: one owner per port ---------------------------------------------------------------


def _listener(host: str = "127.0.0.1", port: int = 0, reuseport: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack
    sock.bind((host, port))
    sock.listen(8)
    return sock


@contextlib.contextmanager
def second_master(workdir: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``bext run`` on ``port``; killed (with its workers) if it is still running after."""
    workdir.mkdir()
    path = workdir / "bext.config.toml"
    path.write_text(config(routes(2), workers=1, port=port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bext", "run", "-c", str(path)], cwd=workdir, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def test_a_second_master_on_the_same_port_exits_1(start_bext: Start, tmp_path: Path) -> None:
    first = start_bext(config(routes(1), workers=2))
    with second_master(tmp_path / "second", first.port) as proc:
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the second master started on a port the first one holds")
        assert proc.returncode == 1
        assert f"127.0.0.1:{first.port}" in err and "already in use" in err
    for _ in range(20):  # the first keeps every connection (no split with a second one)
        assert get(first.port).body == b"v1"


@pytest.mark.parametrize("reuseport", [True, False], ids=["reuseport", "plain"])
def test_run_refuses_a_port_another_program_listens_on(tmp_path: Path, reuseport: bool) -> None:
    with _listener(reuseport=reuseport) as other:
        port = other.getsockname()[1]
        with second_master(tmp_path / "m", port) as proc:
            try:
                _out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail("bext started on a port another program listens on")
            assert proc.returncode == 1 and str(port) in err


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 on this host")
def test_a_dual_stack_listener_holds_the_ipv4_port_too() -> None:
    with _listener("::") as other:
        port = other.getsockname()[1]
        with pytest.raises(BindError, match=f"127.0.0.1:{port}: port {port} is already in use"):
            bind_listeners(("127.0.0.1",), port, 2, False)


def test_ports_this_process_holds_are_no_conflict() -> None:
    # port 0 with two addresses: the second one binds the port the first one got
    first = bind_listeners(("127.0.0.1", "127.0.0.2"), 0, 2, False)
    try:
        port = first[0].port
        assert [listener.port for listener in first] == [port, port]
        # a reload that adds an address on a port this master holds: no probe failure
        again = bind_listeners(("127.0.0.3",), port, 1, False)
        again[0].close()
    finally:
        for listener in first:
            listener.close()


def test_connections_in_time_wait_are_no_conflict() -> None:
    """A restart right after a stop: the old run's closed connections linger in TIME_WAIT."""
    (listener,) = bind_listeners(("127.0.0.1",), 0, 1, False)
    port = listener.port
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            server = listener.sockets[0]
            server.settimeout(5)
            conn, _ = server.accept()
            conn.close()  # the server closes first: its side goes to TIME_WAIT
            client.recv(1)
    finally:
        listener.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # without SO_REUSEADDR: TIME_WAIT is there
    (again,) = bind_listeners(("127.0.0.1",), port, 1, False)
    again.close()


def test_a_udp_holder_blocks_quic() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        with pytest.raises(BindError, match=f"udp 127.0.0.1:{port}"):
            bind_listeners(("127.0.0.1",), port, 1, False, QUIC)


# -- item 10: the control socket never blocks the master --------------------------------------


def _control_master(start_bext: Start, tmp_path: Path) -> tuple[BextProcess, Path]:
    sock_path = tmp_path / "ctl.sock"
    return start_bext(config(routes(1), workers=1, control_socket=str(sock_path))), sock_path


def _timed_status(sock_path: Path) -> float:
    started = time.monotonic()
    answer = send_command(sock_path, "status", timeout=10)
    assert '"generation"' in answer
    return time.monotonic() - started


def test_a_silent_control_client_does_not_block_the_master(
    start_bext: Start, tmp_path: Path
) -> None:
    server, sock_path = _control_master(start_bext, tmp_path)
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(str(sock_path))
        time.sleep(0.2)  # the master has seen it
        assert _timed_status(sock_path) < 1.0  # was 2 s: a blocking read of the silent one
        started = time.monotonic()
        assert get(server.port).body == b"v1"
        assert time.monotonic() - started < 1.0


def test_a_control_client_may_send_its_command_in_pieces(start_bext: Start, tmp_path: Path) -> None:
    _server, sock_path = _control_master(start_bext, tmp_path)
    with socket.socket(socket.AF_UNIX) as slow:
        slow.settimeout(10)
        slow.connect(str(sock_path))
        slow.sendall(b"sta")
        time.sleep(0.3)
        assert _timed_status(sock_path) < 1.0  # others are served meanwhile
        slow.sendall(b"tus\n")
        reply = b""
        while not reply.endswith(b"\n"):
            data = slow.recv(65536)
            assert data, "closed without a reply"
            reply += data
        assert b'"generation"' in reply


def test_many_silent_control_clients_hold_a_bounded_number_of_fds(
    start_bext: Start, tmp_path: Path
) -> None:
    server, sock_path = _control_master(start_bext, tmp_path)
    master = psutil.Process(server.pid)
    before = master.num_fds()
    clients = []
    try:
        for _ in range(4 * MAX_PENDING):
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(str(sock_path))
            clients.append(client)
        time.sleep(0.3)
        assert _timed_status(sock_path) < 1.0
        assert master.num_fds() <= before + MAX_PENDING + 2
    finally:
        for client in clients:
            client.close()
    assert _timed_status(sock_path) < 1.0


def test_tcp_listeners_defer_accept_until_the_client_speaks() -> None:
    """TCP_DEFER_ACCEPT (nginx's ``deferred``) on TCP listeners, never on QUIC's UDP ones:
    a connect that sends nothing does not wake a worker."""
    listeners = bind_listeners(("127.0.0.1",), 0, 2, False)
    quic = bind_listeners(("127.0.0.1",), 0, 1, False, kind=QUIC)
    try:
        for sock in listeners[0].sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0
        with pytest.raises(OSError):
            quic[0].sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT)
    finally:
        for listener in listeners + quic:
            listener.close()
