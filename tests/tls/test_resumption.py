"""The claim in bext.tls.context's docstring: a context built before fork() lets a client
resume its session on a *different* worker process, because the workers share the
session-ticket keys. Checked for TLS 1.2 and TLS 1.3 (Python's client reports
`session_reused` for both), on the default certificate and on an SNI one.

A negative control builds the context in each child instead: then the second worker
cannot decrypt the first one's ticket and the session is not resumed, which shows the
positive result comes from the shared keys and not from something else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bext.tls.certs import ResolvedCertificates, SNIEntry
from bext.tls.context import build_server_context
from tests.tls.pki import CA, make_leaf, write_pair

MakeContext = Callable[[], ssl.SSLContext]


def _serve(sock: socket.socket, make_context: MakeContext) -> None:
    """Child process: answer each TLS connection with this process's pid, until killed
    or idle for 10 s (so a child can never outlive a crashed test run for long)."""
    context = make_context()
    sock.settimeout(10)
    while True:
        raw, _ = sock.accept()
        raw.settimeout(5)
        with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
            tls.sendall(f"{os.getpid()}\n".encode())  # after the handshake: carries 1.3 tickets
            tls.recv(1)  # until the client closes


@contextlib.contextmanager
def forked_workers(make_context: MakeContext, count: int = 2) -> Iterator[list[int]]:
    """Fork `count` children, each serving TLS on its own loopback port; yield the ports.

    The children are always killed and reaped, whatever the test does.
    """
    sockets: list[socket.socket] = []
    pids: list[int] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            sockets.append(sock)
        for sock in sockets:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 0
                try:
                    _serve(sock, make_context)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            pids.append(pid)
        yield [sock.getsockname()[1] for sock in sockets]
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for sock in sockets:
            sock.close()


def connect(
    client: ssl.SSLContext, port: int, server_name: str, session: ssl.SSLSession | None = None
) -> tuple[int, ssl.SSLSession, bool]:
    """(server pid, the session to resume later, whether this one was resumed)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname=server_name, session=session) as tls,
    ):
        line = b""
        while not line.endswith(b"\n"):
            chunk = tls.recv(64)
            assert chunk, "server closed early"
            line += chunk
        current = tls.session
        assert current is not None
        return int(line), current, bool(tls.session_reused)


@pytest.fixture(scope="module")
def resolved(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> ResolvedCertificates:
    directory = tmp_path_factory.mktemp("resumption")
    default = write_pair(directory, "default", make_leaf(ca, "localhost"))
    shop = write_pair(directory, "shop", make_leaf(ca, "shop.test", "*.shop.test"))
    return ResolvedCertificates(
        *default, sni=(SNIEntry(("shop.test", "*.shop.test"), *shop, "server.tls.certificates[0]"),)
    )


def client_context(ca: CA, tmp_path: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    client = ssl.create_default_context(cafile=str(ca.write(tmp_path / "ca.pem")))
    client.minimum_version = client.maximum_version = version
    return client


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("server_name", ["localhost", "www.shop.test"])
@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.2", "TLSv1.3"])
def test_session_resumes_on_another_worker(
    resolved: ResolvedCertificates,
    ca: CA,
    tmp_path: Path,
    version: ssl.TLSVersion,
    server_name: str,
) -> None:
    context = build_server_context(resolved, ["http/1.1"])  # in the "master", before fork
    client = client_context(ca, tmp_path, version)
    with forked_workers(lambda: context) as (first, second):
        pid_a, session, reused_a = connect(client, first, server_name)
        pid_b, _, reused_b = connect(client, second, server_name, session)
    assert pid_a != pid_b
    assert not reused_a
    assert reused_b


@pytest.mark.parametrize("version", VERSIONS, ids=["TLSv1.2", "TLSv1.3"])
def test_contexts_built_after_fork_do_not_resume(
    resolved: ResolvedCertificates, ca: CA, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    client = client_context(ca, tmp_path, version)
    with forked_workers(lambda: build_server_context(resolved, ["http/1.1"])) as (first, second):
        pid_a, session, _ = connect(client, first, "localhost")
        pid_b, _, reused = connect(client, second, "localhost", session)
        # ...while the same worker does resume it: the session itself was fine.
        _, _, reused_same = connect(client, first, "localhost", session)
    assert pid_a != pid_b
    assert not reused
    assert reused_same
