"""The local CA: where it lives, what it creates (once), the leaves it issues and reuses,
and that two processes issuing at the same time agree on one CA and one leaf."""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from bext.config.load import parse_config
from bext.tls.certs import ResolvedCertificates
from bext.tls.context import build_server_context
from bext.tls.internal_ca import (
    InternalCAError,
    describe_ca,
    ensure_ca,
    internal_hosts,
    issue_leaf,
    state_dir,
)
from tests.tls.pki import key_pem, now
from tests.tls.server import TLSServer, handshake


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def verify(root: Path, leaf: Path, name: str) -> None:
    """Chain building and name checking as a WebPKI client does it (cryptography's verifier)."""
    store = Store([load_cert(root)])
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(store).build_server_verifier(subject)
    verifier.verify(load_cert(leaf), [])


# --- state_dir ---------------------------------------------------------------------------------


def test_state_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEXT_STATE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'systemd'}:{tmp_path / 'other'}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert state_dir() == tmp_path / "explicit"
    monkeypatch.delenv("BEXT_STATE_DIR")
    assert state_dir() == tmp_path / "systemd"  # the first of systemd's list
    monkeypatch.delenv("STATE_DIRECTORY")
    assert state_dir() == Path("/var/lib/bext")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert state_dir() == tmp_path / "xdg" / "bext"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert state_dir() == tmp_path / "home" / ".local" / "share" / "bext"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert state_dir() == tmp_path / "home" / ".local" / "share" / "bext"


def test_relative_bext_state_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEXT_STATE_DIR", "state")
    assert state_dir() == tmp_path / "state"


# --- the root ----------------------------------------------------------------------------------


def test_ensure_ca_creates_once_with_private_permissions(state: Path) -> None:
    paths = ensure_ca()
    assert paths.directory == state / "pki"
    assert paths.cert == state / "pki" / "root.crt" and paths.key == state / "pki" / "root.key"
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.cert.stat().st_mode) == 0o644
    cert_bytes, key_bytes = paths.cert.read_bytes(), paths.key.read_bytes()
    assert ensure_ca() == paths
    assert (paths.cert.read_bytes(), paths.key.read_bytes()) == (cert_bytes, key_bytes)
    assert not [p for p in paths.directory.iterdir() if p.name.endswith(".tmp")]


def test_root_certificate_properties(state: Path) -> None:
    paths = ensure_ca()
    root = load_cert(paths.cert)
    key = serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert root.subject == root.issuer
    (cn,) = root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert str(cn.value).startswith("bext Local CA - ")
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert timedelta(days=3649) < lifetime < timedelta(days=3652)
    root.verify_directly_issued_by(root)


def test_loose_directory_permissions_are_tightened(state: Path) -> None:
    (state / "pki").mkdir(parents=True, mode=0o755)
    (state / "pki").chmod(0o755)
    ensure_ca()
    assert stat.S_IMODE((state / "pki").stat().st_mode) == 0o700


def test_root_without_key_is_an_error(state: Path) -> None:
    paths = ensure_ca()
    paths.key.unlink()
    with pytest.raises(
        InternalCAError, match=r"root\.key is missing beside .*root\.crt; move .* aside"
    ):
        ensure_ca()
    with pytest.raises(OSError):  # callers that handle OSError handle it too
        issue_leaf(["localhost"])


def test_root_with_foreign_key_is_an_error(state: Path) -> None:
    paths = ensure_ca()
    paths.key.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(InternalCAError, match="does not belong to"):
        ensure_ca()


def test_interrupted_creation_is_completed(state: Path) -> None:
    """A root.key without root.crt was never trusted by anyone: a new CA replaces it."""
    paths = ensure_ca()
    old_key = paths.key.read_bytes()
    paths.cert.unlink()
    ensure_ca()
    assert paths.cert.exists() and paths.key.read_bytes() != old_key


def test_unusable_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BEXT_STATE_DIR", str(blocker / "state"))
    with pytest.raises(InternalCAError, match=r"cannot create .*Not a directory .*BEXT_STATE_DIR"):
        ensure_ca()


# --- leaves ------------------------------------------------------------------------------------


def test_leaf_covers_the_hosts_and_verifies(state: Path) -> None:
    hosts = ["localhost", "127.0.0.1", "[::1]", "App.Test.", "*.wild.test", "192.0.2.5"]
    cert, key = issue_leaf(hosts)
    assert cert.parent == key.parent == state / "pki" / "issued"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf = load_cert(cert)
    assert san_of(leaf) == (
        {"localhost", "app.test", "*.wild.test"},
        {"127.0.0.1", "::1", "192.0.2.5"},
    )
    lifetime = leaf.not_valid_after_utc - now()
    assert timedelta(days=360) < lifetime < timedelta(days=366)  # a year, under the 398-day cap
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    root = state / "pki" / "root.crt"
    for name in ("localhost", "127.0.0.1", "::1", "app.test", "x.wild.test", "192.0.2.5"):
        verify(root, cert, name)
    with pytest.raises(x509.verification.VerificationError):
        verify(root, cert, "other.test")


def test_python_clients_trust_the_leaf_with_the_root(state: Path) -> None:
    """A real handshake: Python's ssl with cafile=root.crt, by name and by IP."""
    cert, key = issue_leaf(["localhost", "127.0.0.1", "*.dev.test"])
    context = build_server_context(ResolvedCertificates(cert, key))
    root = str(state / "pki" / "root.crt")
    with TLSServer(context) as server:
        for name in ("localhost", "127.0.0.1", "api.dev.test"):
            handshake(server.port, name, cafile=root)


def test_leaf_is_reused(state: Path) -> None:
    first = issue_leaf(["localhost", "a.test"])
    content = first[0].read_bytes(), first[1].read_bytes()
    second = issue_leaf(["A.test", "localhost", "a.test"])  # same set of names, other order
    assert second == first
    assert (second[0].read_bytes(), second[1].read_bytes()) == content


def test_new_hosts_get_a_new_leaf(state: Path) -> None:
    first = issue_leaf(["localhost"])
    second = issue_leaf(["localhost", "b.test"])
    assert second[0] != first[0]
    assert san_of(load_cert(second[0]))[0] == {"localhost", "b.test"}
    assert first[0].exists()  # a running generation may still be serving it


def test_leaf_near_expiry_is_reissued(state: Path) -> None:
    cert, key = issue_leaf(["localhost"])
    # Replace it by one from the same root, same names, expiring in 10 days.
    root = load_cert(state / "pki" / "root.crt")
    root_key = serialization.load_pem_private_key((state / "pki" / "root.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    leaf_key = serialization.load_pem_private_key(key.read_bytes(), None)
    old = load_cert(cert)
    short = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - timedelta(days=355))
        .not_valid_after(now() + timedelta(days=10))
        .add_extension(
            old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    cert.write_bytes(short.public_bytes(serialization.Encoding.PEM))
    assert issue_leaf(["localhost"]) == (cert, key)
    renewed = load_cert(cert)
    assert renewed.serial_number != short.serial_number
    assert renewed.not_valid_after_utc - now() > timedelta(days=300)


def test_leaf_from_another_root_is_reissued(state: Path) -> None:
    cert, _ = issue_leaf(["localhost"])
    old_serial = load_cert(cert).serial_number
    for name in ("root.crt", "root.key"):  # a new CA (the operator moved the old one aside)
        (state / "pki" / name).unlink()
    ensure_ca()
    assert issue_leaf(["localhost"])[0] == cert
    assert load_cert(cert).serial_number != old_serial
    load_cert(cert).verify_directly_issued_by(load_cert(state / "pki" / "root.crt"))


def test_damaged_leaf_is_reissued(state: Path) -> None:
    _, key = issue_leaf(["localhost"])
    key.write_text("garbage")
    issue_leaf(["localhost"])
    assert serialization.load_pem_private_key(key.read_bytes(), None)


def test_bad_hosts_are_refused(state: Path) -> None:
    for hosts in ([], ["bad host"], ["a/b"], [""]):
        with pytest.raises(ValueError):
            issue_leaf(hosts)


def test_concurrent_issue_from_two_processes(tmp_path: Path) -> None:
    """Two processes race to create the CA and the same leaf: they must end up with one
    root and one leaf that both processes saw and that verifies against the root."""
    for attempt in range(3):
        state = tmp_path / f"race{attempt}"
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        results: list[int] = []
        pids: list[int] = []
        outputs: list[int] = []
        try:
            for _ in range(2):
                out_r, out_w = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the child
                    code = 1
                    try:
                        os.write(ready_w, b"x")
                        os.read(go_r, 1)
                        cert, key = issue_leaf(["localhost", "race.test"], state)
                        os.write(out_w, cert.read_bytes() + b"|" + key.read_bytes())
                        code = 0
                    finally:
                        os._exit(code)
                os.close(out_w)
                pids.append(pid)
                outputs.append(out_r)
            for _ in pids:
                os.read(ready_r, 1)
            os.write(go_w, b"xx")  # release both at once
            seen = []
            for out in outputs:
                chunks = []
                while chunk := os.read(out, 65536):
                    chunks.append(chunk)
                seen.append(b"".join(chunks))
        finally:
            for pid in pids:
                _, status = os.waitpid(pid, 0)
                results.append(os.waitstatus_to_exitcode(status))
            for fd in (ready_r, ready_w, go_r, go_w, *outputs):
                os.close(fd)
        assert results == [0, 0]
        assert seen[0] == seen[1] != b""
        (leaf_path,) = (state / "pki" / "issued").glob("*.crt")
        assert seen[0].split(b"|")[0] == leaf_path.read_bytes()
        verify(state / "pki" / "root.crt", leaf_path, "race.test")
        leftovers = [p.name for p in (state / "pki").rglob("*.tmp")]
        assert leftovers == []


# --- internal_hosts / describe_ca ----------------------------------------------------------------


def test_internal_hosts(tmp_path: Path) -> None:
    text = """
[server]
host = ["0.0.0.0", "::", "192.0.2.1", "localhost", "2001:db8::1"]
tls = "internal"

[[route_rules]]
host = "App.Example.com"
pattern = "/**"
respond = { status = 200 }

[[route_rules]]
host = "*.example.org"
pattern = "/**"
respond = { status = 200 }

[[route_rules]]
host = "[::1]"
pattern = "/x"
respond = { status = 200 }

[[route_rules]]
pattern = "/**"
respond = { status = 200 }
"""
    config = parse_config(tomllib.loads(text), base_dir=tmp_path)
    assert internal_hosts(config) == [
        "localhost",
        "127.0.0.1",
        "::1",
        "192.0.2.1",
        "2001:db8::1",
        "app.example.com",
        "*.example.org",
    ]


def test_describe_ca(state: Path) -> None:
    text = describe_ca(url="https://localhost:8443/")
    root = state / "pki" / "root.crt"
    assert root.exists()  # created on demand, so the printed path exists
    assert f"root certificate: {root}" in text
    assert (
        f"sudo cp {root} /usr/local/share/ca-certificates/bext-local-ca.crt && sudo update-ca-certificates"
        in text
    )
    assert f"curl --cacert {root} https://localhost:8443/" in text
    assert "certutil -d sql:$HOME/.pki/nssdb -A" in text
    assert f"SSL_CERT_FILE={root}" in text
    fingerprint = load_cert(root).fingerprint(hashes.SHA256()).hex(":").upper()
    assert fingerprint in text
