"""TLS termination on a real master: certificates by SNI, ALPN, HSTS/Alt-Svc, redirect,
reload with renewed certificates, the local CA, and Django seeing the request as secure.

Certificates are made in the test with trustme; clients are curl, httpx and Python's ssl.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import trustme

from tests.support.django_app import DemoSite, start_gunicorn
from tests.support.fake_upstream import free_port
from tests.support.h3client import h3_connect, run
from tests.support.server import BextProcess, config

StartBext = Callable[..., BextProcess]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """A default certificate (localhost) and an SNI one (shop.test, *.shop.test)."""
    paths: dict[str, Path] = {}
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    paths["ca"] = tmp_path / "ca.pem"
    for name, hosts in (("default", ["localhost", "127.0.0.1"]),
                        ("shop", ["shop.test", "*.shop.test"])):  # fmt: skip
        leaf = ca.issue_cert(*hosts)
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.crt"))
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(str(tmp_path / f"{name}.crt"), append=True)
        leaf.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        paths[name] = tmp_path / f"{name}.crt"
        paths[name + "_key"] = tmp_path / f"{name}.key"
    return paths


def tls_config(
    certs: dict[str, Path], routes: str = "", tls_extra: str = "", **server: object
) -> str:
    text = config(routes, **server)
    return text.replace(
        "\n\n",
        f"""

[server.tls]
port = 0
cert = "{certs["default"]}"
key = "{certs["default_key"]}"
{tls_extra}

[[server.tls.certificates]]
hosts = ["shop.test", "*.shop.test"]
cert = "{certs["shop"]}"
key = "{certs["shop_key"]}"

""",
        1,
    )


HELLO = """
[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "hello over tls" }
"""


def peer_names(port: int, server_name: str, cafile: Path) -> list[str]:
    """The DNS/IP names in the certificate the server presents for ``server_name``."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        cert = tls.getpeercert()
    return [value for _, value in cert["subjectAltName"]]


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sni_picks_the_certificate(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(tls_config(certs, HELLO))
    port = server.tls_port
    assert port and port != server.port
    assert "shop.test" in peer_names(port, "shop.test", certs["ca"])
    assert "*.shop.test" in peer_names(port, "api.shop.test", certs["ca"])
    assert "localhost" in peer_names(port, "localhost", certs["ca"])
    assert "localhost" in peer_names(port, "unknown.example", certs["ca"])
    # curl verifies the chain and the name: it only succeeds with the right certificate.
    for host in ("shop.test", "www.shop.test", "localhost"):
        result = curl("--cacert", str(certs["ca"]), "--resolve", f"{host}:{port}:127.0.0.1",
                      f"https://{host}:{port}/")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello over tls"


def test_alpn_http2_and_http11_with_curl(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(tls_config(certs, HELLO))
    url = f"https://localhost:{server.tls_port}/x"
    resolve = f"localhost:{server.tls_port}:127.0.0.1"
    fmt = "%{http_version} %{http_code}"
    h2 = curl("--cacert", str(certs["ca"]), "--resolve", resolve, "--http2", "-o", "/dev/null",
              "-w", fmt, url)  # fmt: skip
    assert h2.stdout == "2 200", h2.stderr
    h1 = curl("--cacert", str(certs["ca"]), "--resolve", resolve, "--http1.1", "-o",
              "/dev/null", "-w", fmt, url)  # fmt: skip
    assert h1.stdout == "1.1 200", h1.stderr
    plain = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", fmt, server.base_url + "/x")
    assert plain.stdout == "2 200", plain.stderr


def test_httpx_http2_many_requests(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(tls_config(certs, HELLO))
    verify = ssl.create_default_context(cafile=str(certs["ca"]))
    with httpx.Client(http2=True, verify=verify, timeout=10) as client:
        for i in range(50):
            r = client.get(f"https://localhost:{server.tls_port}/n/{i}")
            assert r.http_version == "HTTP/2"
            assert r.text == "hello over tls"
    metrics = httpx.get(server.base_url + "/__bext/metrics").text
    assert "\nbext_tls_handshakes_total 1\n" in metrics  # one connection, one handshake
    assert 'bext_connections_accepted_total{version="2"} 1' in metrics


def test_old_protocols_refused(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(tls_config(certs, HELLO))
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw,
    ):
        context.wrap_socket(raw, server_hostname="localhost").close()


def test_hsts_alt_svc_and_redirect(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(
        tls_config(certs, HELLO, 'hsts = "365d"\nredirect_http = true\nhttp3 = true')
    )
    port = server.tls_port
    verify = ssl.create_default_context(cafile=str(certs["ca"]))
    r = httpx.get(f"https://localhost:{port}/", verify=verify)
    assert r.headers["strict-transport-security"] == "max-age=31536000"
    assert r.headers["alt-svc"] == f'h3=":{port}"; ma=86400'
    plain = httpx.post(server.base_url + "/a/b?x=1&y=%20", headers={"host": "shop.test"},
                       content=b"data")  # fmt: skip
    assert plain.status_code == 308
    assert plain.headers["location"] == f"https://shop.test:{port}/a/b?x=1&y=%20"
    assert "strict-transport-security" not in plain.headers
    bad = httpx.get(server.base_url + "/", headers={"host": "evil.test/x"})
    assert bad.status_code == 400


def test_large_static_file_over_tls(
    start_bext: StartBext, certs: dict[str, Path], tmp_path: Path
) -> None:
    """Files go through TLS (never sendfile around it) over HTTP/1.1 and HTTP/2."""
    root = tmp_path / "files"
    root.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 17)
    (root / "big.bin").write_bytes(data)
    routes = f"""
[[route_rules]]
pattern = "/files/**"
render = "static"
root = "{root}"
"""
    server = start_bext(tls_config(certs, routes))
    verify = ssl.create_default_context(cafile=str(certs["ca"]))
    for http2 in (False, True):
        with httpx.Client(http2=http2, verify=verify, timeout=20) as client:
            r = client.get(f"https://localhost:{server.tls_port}/files/big.bin")
            assert r.status_code == 200
            assert r.content == data
            part = client.get(f"https://localhost:{server.tls_port}/files/big.bin",
                              headers={"range": "bytes=100-199"})  # fmt: skip
            assert part.status_code == 206 and part.content == data[100:200]


def test_session_resumption_across_workers(start_bext: StartBext, certs: dict[str, Path]) -> None:
    """Workers share the master's ticket keys: resumption works whichever worker answers."""
    server = start_bext(tls_config(certs, HELLO, workers=2))
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    session = None
    reused = 0
    for _ in range(12):
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw:
            tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while tls.recv(65536):
                pass
            reused += tls.session_reused
            session = tls.session
            tls.close()
    assert reused == 11


def test_reload_picks_up_renewed_certificates(
    start_bext: StartBext, certs: dict[str, Path]
) -> None:
    server = start_bext(tls_config(certs, HELLO))
    port = server.tls_port

    def serial() -> int:
        context = ssl.create_default_context(cafile=str(certs["ca"]))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
            der = tls.getpeercert(binary_form=True)
        from cryptography import x509

        return x509.load_der_x509_certificate(der).serial_number

    before = serial()
    renewed_ca = trustme.CA()
    leaf = renewed_ca.issue_cert("localhost", "127.0.0.1")
    # A keep-alive connection from before the reload keeps working through it.
    verify = ssl.create_default_context(cafile=str(certs["ca"]))
    with httpx.Client(verify=verify, timeout=10) as old_client:
        assert old_client.get(f"https://localhost:{port}/").status_code == 200
        leaf.cert_chain_pems[0].write_to_path(str(certs["default"]))
        leaf.private_key_pem.write_to_path(str(certs["default_key"]))
        renewed_ca.cert_pem.write_to_path(str(certs["ca"]))
        result = subprocess.run(
            [sys.executable, "-m", "bext", "reload", "-c", str(server.config_path)],
            capture_output=True, text=True, timeout=40,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert old_client.get(f"https://localhost:{port}/").status_code == 200
    assert serial() != before

    # A broken certificate is refused on reload with the key path; the old one keeps serving.
    certs["default_key"].write_text("not a key\n")
    result = subprocess.run(
        [sys.executable, "-m", "bext", "reload", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=40,
    )  # fmt: skip
    assert result.returncode != 0
    assert "server.tls.key" in result.stderr
    verify = ssl.create_default_context(cafile=str(certs["ca"]))
    assert httpx.get(f"https://localhost:{port}/", verify=verify).text == "hello over tls"


def test_check_and_run_refuse_bad_certificates(tmp_path: Path, certs: dict[str, Path]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        tls_config(certs, HELLO).replace(str(certs["shop_key"]), str(tmp_path / "nope.key"))
    )
    check = subprocess.run([sys.executable, "-m", "bext", "check", str(path)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert check.returncode == 78
    assert "server.tls.certificates[0].key" in check.stderr
    run = subprocess.run([sys.executable, "-m", "bext", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.returncode == 78
    assert "server.tls.certificates[0].key" in run.stderr


def test_internal_ca(
    start_bext: StartBext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("BEXT_STATE_DIR", str(state))
    text = config(HELLO).replace("\n\n", "\n\n[server.tls]\ninternal = true\nport = 0\n\n", 1)
    checked = tmp_path / "internal.toml"
    checked.write_text(text)
    check = subprocess.run([sys.executable, "-m", "bext", "check", str(checked)],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "local CA" in check.stdout
    assert not state.exists()  # check never writes anything
    server = start_bext(text)
    cert = subprocess.run([sys.executable, "-m", "bext", "cert", "--path"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert cert.returncode == 0, cert.stderr
    root = Path(cert.stdout.strip())
    assert root.is_file() and root.is_relative_to(state)
    described = subprocess.run([sys.executable, "-m", "bext", "cert"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    assert str(root) in described.stdout
    result = curl("--cacert", str(root), f"https://localhost:{server.tls_port}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello over tls"
    result = curl("--cacert", str(root), f"https://127.0.0.1:{server.tls_port}/")
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def gunicorn_port(demo_site: DemoSite) -> Iterator[int]:
    port = free_port()
    app = start_gunicorn(demo_site, port, workers=2)
    try:
        yield port
    finally:
        app.stop()


def test_django_sees_https_and_client_ip(
    start_bext: StartBext, certs: dict[str, Path], gunicorn_port: int
) -> None:
    routes = f"""
[upstreams.django]
[[upstreams.django.servers]]
url = "http://127.0.0.1:{gunicorn_port}"

[[route_rules]]
pattern = "/**"
proxy = "django"
"""
    server = start_bext(tls_config(certs, routes, "http3 = true"))
    verify = ssl.create_default_context(cafile=str(certs["ca"]))

    async def over_http3() -> dict[str, object]:
        async with h3_connect(server.tls_port, certs["ca"]) as client:
            response = await client.request(
                "GET", "/whoami", authority=f"localhost:{server.tls_port}"
            )
            assert response.status == 200, response
            seen: dict[str, object] = json.loads(response.body)
            return seen

    seen3 = run(over_http3())
    assert seen3["is_secure"] is True and seen3["x_real_ip"] == "127.0.0.1"
    for http2 in (False, True):
        with httpx.Client(http2=http2, verify=verify, timeout=10) as client:
            r = client.get(f"https://localhost:{server.tls_port}/whoami")
            assert r.status_code == 200, r.text
            assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            seen = r.json()
            assert seen["is_secure"] is True and seen["scheme"] == "https"
            assert seen["x_real_ip"] == "127.0.0.1"
            assert seen["host"] == f"localhost:{server.tls_port}"
    plain = httpx.get(server.base_url + "/whoami").json()
    assert plain["is_secure"] is False


def test_h2load_over_tls(start_bext: StartBext, certs: dict[str, Path]) -> None:
    server = start_bext(tls_config(certs, HELLO))
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "8", "-m", "10", "-t", "1",
         f"https://127.0.0.1:{server.tls_port}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "2000 succeeded" in result.stdout, result.stdout + result.stderr
    assert "h2" in result.stdout  # ALPN chose HTTP/2


def test_slow_request_survives_reload_over_h2(
    start_bext: StartBext, certs: dict[str, Path], gunicorn_port: int
) -> None:
    """GOAWAY on reload: a request in flight on the old worker still completes."""
    routes = f"""
[upstreams.django]
read_timeout_ms = 20000
[[upstreams.django.servers]]
url = "http://127.0.0.1:{gunicorn_port}"

[[route_rules]]
pattern = "/**"
proxy = "django"
"""
    server = start_bext(tls_config(certs, routes))
    outcome: dict[str, object] = {}

    def slow() -> None:
        # curl, not httpx: httpcore fails every open stream on GOAWAY, even those the
        # server promises to finish (last_stream_id), which is what is tested here.
        result = curl("--cacert", str(certs["ca"]), "--http2", "-w", " %{http_version}",
                      "--resolve", f"localhost:{server.tls_port}:127.0.0.1",
                      f"https://localhost:{server.tls_port}/slow?seconds=2")  # fmt: skip
        outcome["status"] = result.returncode
        outcome["output"] = result.stdout + result.stderr

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.7)
    server.signal(__import__("signal").SIGHUP)
    thread.join(30)
    assert outcome == {"status": 0, "output": "done 2"}
    status = subprocess.run([sys.executable, "-m", "bext", "status", "--json", "-c",
                             str(server.config_path)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert json.loads(status.stdout)["generation"] >= 2


def _read_response(tls: ssl.SSLSocket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body, read from ``tls``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed early: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))  # fmt: skip
    while len(rest) < length:
        rest += tls.recv(65536)
    return head


def test_http11_over_tls_learns_that_its_worker_drains(
    start_bext: StartBext, certs: dict[str, Path]
) -> None:
    """A keep-alive TLS client gets ``Connection: close`` after a reload, and the old
    worker exits about a second after its last request (not at graceful_timeout).

    Every listener's context shares the worker's one ``stopping`` flag; when each had a
    copy, only the plain listener's connections ever saw it.
    """
    routes = '[[route_rules]]\npattern = "/**"\nrespond = { status = 200, body = "hi" }\n'
    server = start_bext(tls_config(certs, routes, workers=1))
    (old_worker,) = server.worker_pids()
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    context.set_alpn_protocols(["http/1.1"])
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(request)
        assert b"connection: close" not in _read_response(tls).lower()
        server.signal(__import__("signal").SIGHUP)
        server.wait_for_log(r"generation 2 serving")
        tls.sendall(request)  # within the drain grace the old worker still answers it
        head = _read_response(tls)
        answered = time.monotonic()
        assert b"connection: close" in head.lower(), head
        assert tls.recv(1) == b""  # and then closes the connection
    while psutil.pid_exists(old_worker) and time.monotonic() - answered < 10:
        time.sleep(0.05)
    assert time.monotonic() - answered < 2.0, "the old worker lingered after its last request"
