"""resolve_certificates: every TLSSetupError case names its config key; warnings too."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from bext.config import Config
from bext.config.schema import ServerConfig
from bext.tls.certs import ResolvedCertificates, SNIEntry, resolve_certificates
from bext.tls.errors import TLSSetupError
from tests.tls.pki import CA, key_pem, make_ca, make_leaf, new_key, now, write_pair

Parse = Callable[[str], Config]


def tls_toml(
    cert: Path, key: Path, *entries: tuple[list[str], Path, Path], routes: str = ""
) -> str:
    text = f'[server]\nport = 8080\n\n[server.tls]\nport = 8443\ncert = "{cert}"\nkey = "{key}"\n'
    for hosts, entry_cert, entry_key in entries:
        quoted = ", ".join(f'"{h}"' for h in hosts)
        text += f'\n[[server.tls.certificates]]\nhosts = [{quoted}]\ncert = "{entry_cert}"\nkey = "{entry_key}"\n'
    return text + routes


def problems_of(parse: Parse, text: str) -> list[str]:
    with pytest.raises(TLSSetupError) as info:
        resolve_certificates(parse(text))
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


@pytest.fixture
def default_pair(ca: CA, tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(tmp_path, "default", make_leaf(ca, "localhost", "127.0.0.1"))


@pytest.fixture
def shop_pair(ca: CA, tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(tmp_path, "shop", make_leaf(ca, "shop.test", "*.shop.test"))


def test_valid_config_resolves_in_order(
    parse: Parse,
    ca: CA,
    tmp_path: Path,
    default_pair: tuple[Path, Path],
    shop_pair: tuple[Path, Path],
) -> None:
    other = write_pair(tmp_path, "other", make_leaf(ca, "other.test"))
    resolved = resolve_certificates(
        parse(
            tls_toml(
                *default_pair, (["shop.test", "*.shop.test"], *shop_pair), (["Other.Test"], *other)
            )
        )
    )
    assert resolved.warnings == ()
    assert resolved.default == default_pair
    assert resolved.sni == (
        SNIEntry(("shop.test", "*.shop.test"), *shop_pair, "server.tls.certificates[0]"),
        SNIEntry(("other.test",), *other, "server.tls.certificates[1]"),
    )
    assert resolved.internal_ca is None
    assert resolved.expires is not None and resolved.expires > now() + timedelta(days=80)
    # The same selection rules as the TCP listener's SNI callback, for the HTTP/3 engine.
    assert resolved.select("shop.test") == shop_pair
    assert resolved.select("WWW.Shop.Test.") == shop_pair
    assert resolved.select("a.b.shop.test") == default_pair
    assert resolved.select("other.test") == other
    assert resolved.select("unknown.test") == default_pair
    assert resolved.select(None) == default_pair


def test_no_tls_is_a_programming_error(parse: Parse) -> None:
    with pytest.raises(ValueError):
        resolve_certificates(parse("[server]\nport = 8080\n"))


def test_missing_files_name_their_keys(
    parse: Parse, tmp_path: Path, default_pair: tuple[Path, Path], shop_pair: tuple[Path, Path]
) -> None:
    missing = tmp_path / "nope.pem"
    problems = problems_of(
        parse,
        tls_toml(
            missing, default_pair[1], (["a.test"], *shop_pair), (["b.test"], shop_pair[0], missing)
        ),
    )
    assert problems == [
        f"server.tls.cert: cannot read {missing}: No such file or directory",
        f"server.tls.certificates[1].key: cannot read {missing}: No such file or directory",
    ]


def test_directory_instead_of_file(
    parse: Parse, tmp_path: Path, default_pair: tuple[Path, Path]
) -> None:
    problems = problems_of(parse, tls_toml(tmp_path, default_pair[1]))
    assert problems == [f"server.tls.cert: cannot read {tmp_path}: Is a directory"]


def test_key_of_another_certificate(
    parse: Parse,
    ca: CA,
    tmp_path: Path,
    default_pair: tuple[Path, Path],
    shop_pair: tuple[Path, Path],
) -> None:
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(key_pem(new_key()))
    problems = problems_of(
        parse,
        tls_toml(*default_pair, (["a.test"], *shop_pair), (["shop.test"], shop_pair[0], stranger)),
    )
    assert problems == [
        f"server.tls.certificates[1].key: does not match the certificate in {shop_pair[0]}"
    ]


def test_expired_certificate(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(
        ca, "localhost", not_before=now() - timedelta(days=400), not_after=now() - timedelta(days=3)
    )
    cert, key = write_pair(tmp_path, "old", leaf)
    day = (now() - timedelta(days=3)).strftime("%Y-%m-%d")
    assert problems_of(parse, tls_toml(cert, key)) == [
        f"server.tls.cert: certificate expired on {day} ({cert})"
    ]


def test_expiring_soon_is_a_warning(parse: Parse, ca: CA, tmp_path: Path) -> None:
    cert, key = write_pair(
        tmp_path, "soon", make_leaf(ca, "localhost", not_after=now() + timedelta(days=5, hours=1))
    )
    resolved = resolve_certificates(parse(tls_toml(cert, key)))
    assert len(resolved.warnings) == 1
    assert resolved.warnings[0].startswith("server.tls.cert: certificate expires on ")
    assert "in 5 days" in resolved.warnings[0] and "renew" in resolved.warnings[0]
    # 20 days is fine.
    cert, key = write_pair(
        tmp_path, "later", make_leaf(ca, "localhost", not_after=now() + timedelta(days=20))
    )
    assert resolve_certificates(parse(tls_toml(cert, key))).warnings == ()


def test_not_yet_valid_is_a_warning(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(ca, "localhost", not_before=now() + timedelta(days=2))
    cert, key = write_pair(tmp_path, "future", leaf)
    (warning,) = resolve_certificates(parse(tls_toml(cert, key))).warnings
    assert warning.startswith("server.tls.cert: certificate is not valid before ")


def test_not_pem(parse: Parse, tmp_path: Path, default_pair: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    assert problems_of(parse, tls_toml(junk, junk)) == [
        f'server.tls.cert: {junk} is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)',
        f'server.tls.key: {junk} is not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)',
    ]


def test_damaged_pem(parse: Parse, tmp_path: Path, default_pair: tuple[Path, Path]) -> None:
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert problems_of(parse, tls_toml(damaged, bad_key)) == [
        f"server.tls.cert: {damaged} is not a valid PEM certificate (damaged or truncated base64)",
        f"server.tls.key: {bad_key} is not a valid PEM private key",
    ]


def test_der_files_are_recognised(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(ca, "localhost")
    cert, key = tmp_path / "leaf.der", tmp_path / "leaf.key.der"
    cert.write_bytes(leaf.der)
    key.write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    problems = problems_of(parse, tls_toml(cert, key))
    assert problems[0].startswith(
        f"server.tls.cert: {cert} is a DER (binary) certificate; bext needs PEM: openssl x509 -inform der"
    )
    assert problems[1].startswith(
        f"server.tls.key: {key} is a DER (binary) key; bext needs PEM: openssl pkey -inform der"
    )


def test_swapped_cert_and_key(parse: Parse, default_pair: tuple[Path, Path]) -> None:
    cert, key = default_pair
    assert problems_of(parse, tls_toml(key, cert)) == [
        f"server.tls.cert: {key} holds a private key, not a certificate (are cert and key swapped?)",
        f"server.tls.key: {cert} holds a certificate, not a private key (are cert and key swapped?)",
    ]


def test_encrypted_keys(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(ca, "localhost")
    cert, _ = write_pair(tmp_path, "enc", leaf)
    pkcs8 = tmp_path / "pkcs8.key"
    pkcs8.write_bytes(key_pem(leaf.key, b"secret"))
    legacy = tmp_path / "legacy.key"  # "-----BEGIN EC PRIVATE KEY-----" with Proc-Type: 4,ENCRYPTED
    legacy.write_bytes(
        leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert b"Proc-Type: 4,ENCRYPTED" in legacy.read_bytes()
    for path in (pkcs8, legacy):
        (problem,) = problems_of(parse, tls_toml(cert, path))
        assert problem.startswith(
            f"server.tls.key: {path} is encrypted with a passphrase, which bext cannot ask for"
        )
        assert f"openssl pkey -in {path}" in problem


def test_weak_rsa_key(parse: Parse, ca: CA, tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "weak", make_leaf(ca, "localhost", key=new_key("rsa", 1024)))
    assert problems_of(parse, tls_toml(cert, key)) == [
        f"server.tls.key: the RSA key in {key} has 1024 bits, too weak for clients; use at least 2048"
    ]


def test_rsa_and_combined_files_work(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(ca, "localhost", key=new_key("rsa", 2048))
    cert, key = write_pair(tmp_path, "rsa", leaf)
    combined = tmp_path / "combined.pem"  # certbot/HAProxy style: certificate and key in one file
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    assert resolve_certificates(parse(tls_toml(combined, combined))).warnings == ()
    key_first = tmp_path / "key_first.pem"
    key_first.write_bytes(key.read_bytes() + cert.read_bytes())
    assert resolve_certificates(parse(tls_toml(key_first, key_first))).warnings == ()


def test_every_problem_is_reported_at_once(
    parse: Parse, tmp_path: Path, default_pair: tuple[Path, Path]
) -> None:
    missing = tmp_path / "missing.pem"
    problems = problems_of(
        parse, tls_toml(missing, default_pair[1], (["a.test"], default_pair[1], default_pair[0]))
    )
    assert [p.split(":")[0] for p in problems] == [
        "server.tls.cert",
        "server.tls.certificates[0].cert",
        "server.tls.certificates[0].key",
    ]


def test_openssl_refusal_is_reported_with_the_key(parse: Parse, ca: CA, tmp_path: Path) -> None:
    """What cryptography accepts but OpenSSL's security level refuses: a P-192 key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    leaf = make_leaf(ca, "localhost", key=ec.generate_private_key(ec.SECP192R1()))
    cert, key = write_pair(tmp_path, "p192", leaf)
    assert problems_of(parse, tls_toml(cert, key)) == [
        f"server.tls.cert: OpenSSL refuses {cert} with {key}: ee key too small"
    ]


# --- warnings about names and chains ------------------------------------------------------


def test_sni_hosts_not_covered(
    parse: Parse,
    ca: CA,
    tmp_path: Path,
    default_pair: tuple[Path, Path],
    shop_pair: tuple[Path, Path],
) -> None:
    resolved = resolve_certificates(
        parse(
            tls_toml(
                *default_pair,
                (
                    ["shop.test", "a.shop.test", "a.b.shop.test", "*.other.test", "shop.test"],
                    *shop_pair,
                ),
            )
        )
    )
    where = "server.tls.certificates[0].hosts"
    assert resolved.warnings == (
        f"{where}: a.b.shop.test is not covered by the certificate in {shop_pair[0]} (it names *.shop.test, shop.test); clients will reject it",
        f"{where}: *.other.test is not covered by the certificate in {shop_pair[0]} (it names *.shop.test, shop.test); clients will reject it",
        f"{where}: shop.test is also listed in server.tls.certificates[0], which is used",
    )


def test_sni_ip_host_and_missing_san(
    parse: Parse, ca: CA, tmp_path: Path, default_pair: tuple[Path, Path]
) -> None:
    no_san = write_pair(tmp_path, "nosan", make_leaf(ca, "old.test", san=False))
    resolved = resolve_certificates(
        parse(tls_toml(*default_pair, (["old.test", "10.0.0.1"], *no_san)))
    )
    assert resolved.warnings == (
        f"server.tls.certificates[0].cert: the certificate in {no_san[0]} has no subjectAltName; clients ignore its common name and will reject it",
        "server.tls.certificates[0].hosts: 10.0.0.1 is an IP address, which clients never send in SNI; connections by address get the default certificate",
    )


def test_route_hosts_without_a_certificate(
    parse: Parse, default_pair: tuple[Path, Path], shop_pair: tuple[Path, Path]
) -> None:
    routes = "".join(
        f'\n[[route_rules]]\nhost = "{host}"\npattern = "/**"\nrespond = {{ status = 200 }}\n'
        for host in ("localhost", "www.shop.test", "*.shop.test", "blog.test", "127.0.0.1", "[::1]")
    )
    resolved = resolve_certificates(
        parse(tls_toml(*default_pair, (["shop.test", "*.shop.test"], *shop_pair), routes=routes))
    )
    assert resolved.warnings == (
        f"route_rules[3].host: blog.test gets the default certificate ({default_pair[0]}), which does not cover it; clients will reject it",
        f"route_rules[5].host: ::1 gets the default certificate ({default_pair[0]}), which does not cover it; clients will reject it",
    )


def test_self_signed_warning(parse: Parse, tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, "self", make_leaf(None, "localhost"))
    (warning,) = resolve_certificates(parse(tls_toml(cert, key))).warnings
    assert warning.startswith(f"server.tls.cert: {cert} is self-signed; ")


def test_missing_intermediate_warning(parse: Parse, ca: CA, tmp_path: Path) -> None:
    """A leaf from a public-CA-like intermediate (it has AIA caIssuers) without its chain."""
    intermediate = make_ca("Test Intermediate R1", issuer=ca)
    leaf = make_leaf(intermediate, "localhost", aia=True)
    cert, key = write_pair(tmp_path, "leafonly", leaf, chain=False)
    (warning,) = resolve_certificates(parse(tls_toml(cert, key))).warnings
    assert warning.startswith(
        f"server.tls.cert: {cert} holds only the server certificate, without the intermediate"
    )
    assert "CN=Test Intermediate R1" in warning and "fullchain.pem" in warning
    # With the chain (the fullchain.pem), no warning; nor for private CAs without AIA.
    cert, key = write_pair(tmp_path, "full", leaf)
    assert resolve_certificates(parse(tls_toml(cert, key))).warnings == ()
    cert, key = write_pair(tmp_path, "private", make_leaf(intermediate, "localhost"), chain=False)
    assert resolve_certificates(parse(tls_toml(cert, key))).warnings == ()


def test_chain_out_of_order(parse: Parse, ca: CA, tmp_path: Path) -> None:
    leaf = make_leaf(ca, "localhost")
    cert, key = write_pair(tmp_path, "reversed", leaf)
    cert.write_bytes(ca.pem + leaf.pem)
    problems = problems_of(parse, tls_toml(cert, key))  # the first certificate is the CA's
    assert problems == [f"server.tls.key: does not match the certificate in {cert}"]
    intermediate = make_ca("Intermediate", issuer=ca)
    leaf = make_leaf(intermediate, "localhost")
    cert, key = write_pair(tmp_path, "mixed", leaf)
    cert.write_bytes(leaf.pem + ca.pem + intermediate.pem)
    (warning,) = resolve_certificates(parse(tls_toml(cert, key))).warnings
    assert (
        warning
        == f"server.tls.cert: the certificates in {cert} are out of order; the server certificate must come first, then the certificate that issued it"
    )


# --- internal ---------------------------------------------------------------------------------


def test_internal_issues_from_the_local_ca(parse: Parse, state: Path) -> None:
    config = parse(
        '[server]\nhost = ["0.0.0.0", "192.0.2.7"]\ntls = "internal"\n'
        '[[route_rules]]\nhost = "app.test"\npattern = "/**"\nrespond = { status = 200 }\n'
    )
    resolved = resolve_certificates(config)
    assert resolved.internal_ca == state / "pki" / "root.crt"
    assert resolved.default_cert.is_relative_to(state / "pki" / "issued")
    assert resolved.warnings == ()
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(resolved.default_cert.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "app.test"}
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "::1",
        "192.0.2.7",
    }
    # A second resolve reuses the same files.
    assert resolve_certificates(config).default == resolved.default


def test_internal_ca_failure_is_a_setup_error(
    parse: Parse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BEXT_STATE_DIR", str(blocker / "state"))
    (problem,) = problems_of(parse, '[server]\ntls = "internal"\n')
    assert problem.startswith("server.tls: bext's local CA: cannot create ")
    assert "Not a directory" in problem


def test_resolved_certificates_can_be_built_directly(tmp_path: Path) -> None:
    """The HTTP/3 engine and tests may construct one; select() works without a config."""
    entry = SNIEntry(("*.a.test",), tmp_path / "a.crt", tmp_path / "a.key", "x")
    resolved = ResolvedCertificates(tmp_path / "d.crt", tmp_path / "d.key", (entry,))
    assert resolved.select("x.a.test") == (entry.cert, entry.key)
    assert resolved.select_entry("a.test") is None
    assert ServerConfig().tls is None
