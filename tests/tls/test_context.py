"""build_server_context with a real TLS server and real clients (Python ssl, curl, openssl)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bext.tls.certs import ResolvedCertificates, SNIEntry
from bext.tls.context import TLS12_CIPHERS, build_server_context
from bext.tls.errors import TLSSetupError
from tests.tls.pki import CA, Leaf, make_leaf, write_pair
from tests.tls.server import TLSServer, handshake

V = ssl.TLSVersion


@dataclass
class Site:
    server: TLSServer
    cafile: str
    leaves: dict[str, Leaf]

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def site(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server with a default certificate and two SNI entries (exact+wildcard, exact)."""
    directory = tmp_path_factory.mktemp("site")
    leaves = {
        "default": make_leaf(ca, "localhost", "127.0.0.1"),
        "shop": make_leaf(ca, "shop.test", "*.shop.test"),
        "blog": make_leaf(ca, "blog.test"),
    }
    pairs = {name: write_pair(directory, name, leaf) for name, leaf in leaves.items()}
    resolved = ResolvedCertificates(
        *pairs["default"],
        sni=(
            SNIEntry(("shop.test", "*.shop.test"), *pairs["shop"], "server.tls.certificates[0]"),
            SNIEntry(("blog.test",), *pairs["blog"], "server.tls.certificates[1]"),
        ),
    )
    context = build_server_context(resolved, ["h2", "http/1.1"])
    with TLSServer(context) as server:
        yield Site(server, str(ca.write(directory / "ca.pem")), leaves)


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("shop.test", "shop"),
        ("www.shop.test", "shop"),
        ("WWW.SHOP.TEST", "shop"),
        ("blog.test", "blog"),
        ("a.b.shop.test", "default"),  # a wildcard covers one label
        ("unknown.test", "default"),
        ("localhost", "default"),
        (None, "default"),  # no SNI at all
    ],
)
def test_sni_picks_the_certificate(site: Site, server_name: str | None, expected: str) -> None:
    der, *_ = handshake(site.port, server_name)
    assert der == site.leaves[expected].der


def test_sni_certificates_verify(site: Site) -> None:
    for name in ("shop.test", "cart.shop.test", "blog.test", "localhost"):
        handshake(site.port, name, cafile=site.cafile)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["h2", "http/1.1"], "h2"),
        (["http/1.1", "h2"], "h2"),
        (["http/1.1"], "http/1.1"),
        (None, None),
    ],
)
def test_alpn(site: Site, offered: list[str] | None, chosen: str | None) -> None:
    _, _, alpn, body = handshake(site.port, "shop.test", alpn=offered)
    assert alpn == chosen
    assert body.split()[1] == str(chosen)


@pytest.mark.parametrize(("version", "name"), [(V.TLSv1_2, "TLSv1.2"), (V.TLSv1_3, "TLSv1.3")])
def test_tls12_and_tls13_work(site: Site, version: ssl.TLSVersion, name: str) -> None:
    _, negotiated, _, body = handshake(site.port, "blog.test", minimum=version, maximum=version)
    assert negotiated == name
    assert body.startswith(name)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", [V.TLSv1, V.TLSv1_1])
def test_old_versions_are_refused(site: Site, version: ssl.TLSVersion) -> None:
    # SECLEVEL=0 lets this client offer TLS 1.0/1.1 at all; the refusal must be the server's.
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol version"):
        handshake(
            site.port, "blog.test", minimum=version, maximum=version, ciphers="DEFAULT:@SECLEVEL=0"
        )


@pytest.mark.parametrize(
    "cipher", ["AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"]
)
def test_weak_tls12_suites_are_refused(site: Site, cipher: str) -> None:
    with pytest.raises(ssl.SSLError, match=r"(?i)handshake failure|no shared cipher"):
        handshake(site.port, "blog.test", maximum=V.TLSv1_2, ciphers=cipher)


def test_cipher_list_is_ecdhe_aead_only() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(TLS12_CIPHERS)
    suites = context.get_ciphers()
    tls12 = [s for s in suites if s["protocol"] == "TLSv1.2"]
    assert len(tls12) == 6
    for suite in tls12:
        assert suite["kea"] == "kx-ecdhe", suite
        assert suite["aead"], suite
        assert "CBC" not in suite["description"] and "SHA1" not in suite["description"], suite
    assert {s["name"] for s in suites if s["protocol"] == "TLSv1.3"} <= {
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_GCM_SHA256",
    }


def test_context_options(ca: CA, tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "leaf", make_leaf(ca, "localhost"))
    context = build_server_context(ResolvedCertificates(cert, key), ["http/1.1"])
    assert context.minimum_version == V.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert not context.options & ssl.OP_NO_TICKET
    assert not context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.sni_callback is None  # nothing to choose between


def test_files_gone_after_resolve(ca: CA, tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "leaf", make_leaf(ca, "localhost"))
    other = write_pair(tmp_path, "other", make_leaf(ca, "other.test"))
    resolved = ResolvedCertificates(
        cert, key, (SNIEntry(("other.test",), *other, "server.tls.certificates[0]"),)
    )
    other[1].write_bytes(key.read_bytes())  # now the key of another certificate
    with pytest.raises(TLSSetupError) as info:
        build_server_context(resolved)
    (problem,) = info.value.problems
    assert problem.startswith(
        f"server.tls.certificates[0]: OpenSSL refuses {other[0]} with {other[1]}: "
    )
    other[0].unlink()
    with pytest.raises(TLSSetupError, match=r"^server.tls.certificates\[0\]: cannot read "):
        build_server_context(resolved)


# --- other clients ----------------------------------------------------------------------------


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def curl(site: Site, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", site.cafile, "--resolve", f"{host}:{site.port}:127.0.0.1",
         *args, f"https://{host}:{site.port}/"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip


@needs_curl
@pytest.mark.parametrize("host", ["shop.test", "api.shop.test", "blog.test", "localhost"])
def test_curl_verifies_each_host(site: Site, host: str) -> None:
    result = curl(site, host, "--http1.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "http/1.1"


@needs_curl
def test_curl_rejects_a_host_served_the_default(site: Site) -> None:
    result = curl(site, "unknown.test")
    assert result.returncode == 60, result.stderr  # peer certificate cannot be authenticated


@needs_curl
def test_curl_tls13_and_tls12(site: Site) -> None:
    result = curl(site, "shop.test", "--http1.1", "--tlsv1.3")
    assert result.returncode == 0 and result.stdout.startswith("TLSv1.3"), result.stderr
    result = curl(site, "shop.test", "--http1.1", "--tlsv1.2", "--tls-max", "1.2")
    assert result.returncode == 0 and result.stdout.startswith("TLSv1.2 http/1.1 ECDHE-ECDSA-"), (
        result.stderr
    )


def s_client(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{site.port}", "-CAfile", site.cafile, *args],
        input="", capture_output=True, text=True, timeout=10,
    )  # fmt: skip


@needs_openssl
def test_openssl_alpn_and_sni(site: Site) -> None:
    result = s_client(
        site, "-servername", "www.shop.test", "-alpn", "h2,http/1.1", "-verify_return_error"
    )
    assert "ALPN protocol: h2" in result.stdout
    assert "Verify return code: 0 (ok)" in result.stdout
    assert "CN = shop.test" in result.stdout


@needs_openssl
@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_openssl_old_versions_refused(site: Site, flag: str) -> None:
    result = s_client(site, flag, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "blog.test")
    assert result.returncode != 0
    assert "protocol version" in result.stdout + result.stderr


@needs_openssl
def test_openssl_cbc_refused(site: Site) -> None:
    result = s_client(
        site,
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES128-SHA256:AES256-SHA",
        "-servername",
        "blog.test",
    )
    assert result.returncode != 0
    assert "handshake failure" in result.stdout + result.stderr
