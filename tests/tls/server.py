"""A small blocking TLS server in a thread, for handshakes with real clients.

Each connection is answered with a one-line HTTP/1.1 response whose body says what was
negotiated ("<version> <alpn> <cipher>"), then closed; so curl, openssl s_client and
Python's ssl module can all talk to it. Handshake failures are recorded, not raised.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from types import TracebackType


class TLSServer:
    def __init__(self, context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        self.context = context
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    cipher = tls.cipher()
                    body = f"{tls.version()} {tls.selected_alpn_protocol()} {cipher[0] if cipher else None}"
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body.encode()
                    )
                    with contextlib.suppress(OSError, ValueError):
                        tls.unwrap()
            except (OSError, ValueError) as exc:
                self.errors.append(str(exc))
            finally:
                raw.close()


def handshake(
    port: int,
    server_name: str | None,
    *,
    cafile: str | None = None,
    alpn: list[str] | None = None,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    host: str = "127.0.0.1",
) -> tuple[bytes, str | None, str | None, str]:
    """Connect with Python's ssl client; (peer cert DER, version, alpn, response body).

    With `cafile`, the certificate is verified (and the name checked when `server_name`
    is given); without it, any certificate is accepted so tests can see which one came.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        context.load_verify_locations(cafile)
        context.check_hostname = server_name is not None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    if ciphers:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(alpn)
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        data = b""
        try:
            while chunk := tls.recv(4096):
                data += chunk
        except ssl.SSLEOFError:  # closed without close_notify: the response is complete
            pass
        body = data.split(b"\r\n\r\n", 1)[1].decode()
        return der, tls.version(), tls.selected_alpn_protocol(), body
