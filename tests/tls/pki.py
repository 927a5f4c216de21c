"""Test certificates made with `cryptography`: a CA, leaves with chosen names, dates, key
types and extensions, and the files bext reads. ECDSA keys by default (fast to make)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

Key = CertificateIssuerPrivateKeyTypes


def now() -> datetime:
    return datetime.now(UTC)


def new_key(kind: str = "ec", bits: int = 2048) -> Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass
class CA:
    cert: x509.Certificate
    key: Key

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem)
        return path


def make_ca(name: str = "bext test CA", issuer: CA | None = None) -> CA:
    """A root CA, or an intermediate when `issuer` is given."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - timedelta(days=1))
        .not_valid_after(now() + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return CA(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@dataclass
class Leaf:
    cert: x509.Certificate
    key: Key
    chain: list[x509.Certificate]

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make_leaf(
    ca: CA | None,
    *hosts: str,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: Key | None = None,
    san: bool = True,
    aia: bool = False,
) -> Leaf:
    """A server certificate for `hosts` (names, IPs, wildcards), signed by `ca` (self-signed
    when None)."""
    key = key or new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "x")])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now() - timedelta(days=1))
        .not_valid_after(not_after or now() + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if san and names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if aia:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier("http://ca.invalid/issuer.der"),
                    )
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca.key if ca else key, hashes.SHA256())
    return Leaf(cert, key, [ca.cert] if ca else [])


def write_pair(directory: Path, name: str, leaf: Leaf, *, chain: bool = True) -> tuple[Path, Path]:
    """Write NAME.crt (leaf, then the chain unless chain=False) and NAME.key."""
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    data = leaf.pem
    if chain:
        data += b"".join(c.public_bytes(serialization.Encoding.PEM) for c in leaf.chain)
    cert_path.write_bytes(data)
    key_path.write_bytes(key_pem(leaf.key))
    return cert_path, key_path
