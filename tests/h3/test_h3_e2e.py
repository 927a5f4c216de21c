"""HTTP/3 through a real ``bext run`` master: the UDP sockets, the worker, the pipeline."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.h3client import h3_connect, run
from tests.support.inproc_h3 import H3PKI
from tests.support.server import BextProcess, config

StartBext = Callable[..., BextProcess]

ROUTES = """
[[route_rules]]
pattern = "/**"
respond = { status = 200, body = "hello over h3" }
"""


def h3_config(pki: H3PKI) -> str:
    certs = pki.certificates
    ((hosts, sni_cert, sni_key),) = certs.sni
    host_list = ", ".join(f'"{host}"' for host in hosts)
    return config(ROUTES).replace(
        "\n\n",
        f"""

[server.tls]
port = 0
http3 = true
cert = "{certs.cert}"
key = "{certs.key}"

[[server.tls.certificates]]
hosts = [{host_list}]
cert = "{sni_cert}"
key = "{sni_key}"

""",
        1,
    )


def test_http3_through_the_master(start_bext: StartBext, pki: H3PKI) -> None:
    server = start_bext(h3_config(pki))
    assert server.tls_port

    async def main() -> None:
        for name in ("localhost", "shop.test"):
            async with h3_connect(server.tls_port, pki.ca, server_name=name) as client:
                for _ in range(3):  # several requests, one connection
                    response = await client.request("GET", "/x", authority=name)
                    assert response.status == 200, response
                    assert response.body == b"hello over h3"

    run(main())
    server.stop()  # workers flush their access logs on the way out
    assert server.stdout().count('"GET /x HTTP/3" 200') == 6
