"""bext's local certificate authority, for `tls = "internal"` (like Caddy's and mkcert's).

Development machines and private networks want HTTPS without a public CA. bext keeps one
root CA per machine (per state directory) and issues leaf certificates from it for the
names a configuration serves; a developer trusts the root once (`bext cert` says how) and
every site bext serves locally is then valid in curl, browsers and Python clients.

Layout, under `state_dir()/pki/` (directory mode 0700):

    root.crt, root.key      the CA (ECDSA P-256, 10 years; the key is mode 0600)
    issued/<hash>.crt/.key  one leaf per set of host names (ECDSA P-256, 1 year)
    .lock                   serialises creation and issuance between processes

Why these choices:

- The root is created once and never replaced silently: users install it in trust stores,
  so a new root would break every client until they re-trust it. A root.crt without its
  key, or a corrupt one, is an error for the operator to resolve, not something to paper
  over. Only an (almost) expired root is replaced.
- No nameConstraints on the root: route hosts change over the root's ten years and a
  constraint fixed at creation would make later names fail. root.key is protected by file
  permissions instead, and `describe_ca` says that whoever holds it can impersonate sites.
- Leaves live a year (browsers cap publicly trusted leaves at 398 days and Apple also
  applies limits to private roots) and are re-issued on start or reload when they expire
  within 30 days, cover different names, or were signed by another root.
- Leaf file names hash the *set* of hosts, so reordering route rules reuses the same file.
- Files are written to a temporary name and renamed, so a reader never sees half a key;
  an fcntl lock makes a second process wait and then reuse what the first one wrote.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import os
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bext.routing.host import normalize_host

if TYPE_CHECKING:
    from bext.config.schema import Config

__all__ = [
    "LEAF_RENEW_BEFORE",
    "LEAF_VALIDITY",
    "ROOT_VALIDITY",
    "CAPaths",
    "InternalCAError",
    "ca_paths",
    "describe_ca",
    "ensure_ca",
    "internal_hosts",
    "issue_leaf",
    "state_dir",
]

ROOT_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
LEAF_RENEW_BEFORE = timedelta(days=30)
# Backdate notBefore so a client whose clock is a little behind still accepts the leaf.
_BACKDATE = timedelta(hours=1)
# A root this close to its end is replaced: leaves it signs would barely outlive it.
_ROOT_RENEW_BEFORE = timedelta(days=30)
_LOCK_TIMEOUT = 30.0
_ROOT_ORG = "bext Local CA"
_LEAF_ORG = "bext development certificate"
_UNSPECIFIED = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


class InternalCAError(OSError):
    """The local CA could not be created, read or used; the message says which file and why.

    An OSError so callers that already handle "cannot write the state directory" handle
    this too.
    """


@dataclass(frozen=True, slots=True)
class CAPaths:
    """Where the local CA lives. `cert` is the file clients must trust."""

    directory: Path
    cert: Path
    key: Path


def state_dir() -> Path:
    """The directory bext keeps persistent state in (the CA lives in its `pki/`).

    `$BEXT_STATE_DIR` wins (tests, unusual layouts); then `$STATE_DIRECTORY`, which systemd
    sets for a unit with `StateDirectory=` (the first entry if it lists several); then
    /var/lib/bext for root; otherwise `$XDG_DATA_HOME/bext`, defaulting to
    ~/.local/share/bext as the XDG base-directory spec says (a relative XDG_DATA_HOME is
    invalid per the spec and ignored).
    """
    explicit = os.environ.get("BEXT_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/bext")
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "bext"
    return Path.home() / ".local" / "share" / "bext"


def ca_paths(state: Path | None = None) -> CAPaths:
    """The CA's file names, without creating anything (for `bext check`, which writes nothing)."""
    directory = (state if state is not None else state_dir()) / "pki"
    return CAPaths(directory, directory / "root.crt", directory / "root.key")


def ensure_ca(state: Path | None = None) -> CAPaths:
    """Create the local CA unless it exists; return its paths.

    Raises `InternalCAError` if the directory cannot be written or an existing CA is
    unusable (the message names the file and what to do).
    """
    paths = ca_paths(state)
    with _locked(paths.directory):
        _load_or_create_ca(paths)
    return paths


def issue_leaf(hosts: Sequence[str], state: Path | None = None) -> tuple[Path, Path]:
    """A certificate and key from the local CA covering all `hosts`; (cert path, key path).

    Host names become DNS subjectAltNames ("*.example.com" a wildcard one), IP addresses
    IP subjectAltNames; IPv6 may be bracketed. An existing leaf for the same set of names is
    reused unless it expires within `LEAF_RENEW_BEFORE`, is unreadable, or was not signed
    by the current root. Safe to call from several processes at once.
    """
    names = _normalize_hosts(hosts)
    if not names:
        raise ValueError("issue_leaf needs at least one host name")
    paths = ca_paths(state)
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:24]
    issued = paths.directory / "issued"
    cert_path, key_path = issued / f"{digest}.crt", issued / f"{digest}.key"
    with _locked(paths.directory):
        ca_cert, ca_key = _load_or_create_ca(paths)
        _make_private_dir(issued)
        now = datetime.now(UTC)
        if _leaf_reusable(cert_path, key_path, ca_cert, names, now):
            return cert_path, key_path
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = _build_leaf(names, leaf_key, ca_cert, ca_key, now)
        _write_atomic(key_path, _key_pem(leaf_key), 0o600)
        _write_atomic(cert_path, leaf.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def internal_hosts(config: Config) -> list[str]:
    """The names an internal certificate for `config` must cover, in a stable order.

    localhost and both loopback addresses (what developers type), every specific listen
    address (not the 0.0.0.0 / :: wildcards, which no client connects to by name), and
    every route rule host; "*.example.com" rules become wildcard names. Note that a TLS
    wildcard covers exactly one label, while a route wildcard also matches deeper names.
    """
    result: list[str] = []

    def add(name: str) -> None:
        name = normalize_host(name)
        if name not in result:
            result.append(name)

    for name in ("localhost", "127.0.0.1", "::1"):
        add(name)
    for address in config.server.host:
        try:
            if ipaddress.ip_address(address) in _UNSPECIFIED:
                continue
        except ValueError:
            pass
        add(address)
    for rule in config.route_rules:
        if rule.host is not None:
            add(rule.host)
    return result


def describe_ca(state: Path | None = None, url: str | None = None) -> str:
    """Text for `bext cert`: where the root is and how to trust it. Creates the CA if needed.

    `url` is an example address for the curl line (default https://localhost/).
    """
    paths = ensure_ca(state)
    root = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    common_name = _common_name(root)
    crt = shlex.quote(str(paths.cert))
    example = url or "https://localhost/"
    return f"""\
bext local CA
  root certificate: {paths.cert}
  name:             {common_name}
  SHA-256:          {fingerprint}
  valid until:      {root.not_valid_after_utc:%Y-%m-%d}

Certificates for `tls = "internal"` are signed by this CA. Clients accept them once they
trust the root certificate:

  Debian/Ubuntu system store (curl, wget, Python's ssl default context):
    sudo cp {crt} /usr/local/share/ca-certificates/bext-local-ca.crt && sudo update-ca-certificates
  curl, without installing anything:
    curl --cacert {crt} {example}
  Firefox and Chrome on Linux (NSS database; certutil is in the libnss3-tools package):
    certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "{common_name}" -i {crt}
    Firefox keeps one database per profile: repeat with -d sql:$HOME/.mozilla/firefox/<profile>
  Python (ssl, httpx, requests):
    export SSL_CERT_FILE={crt}
    (httpx and requests use certifi's bundle, not the system store; requests reads
    REQUESTS_CA_BUNDLE. SSL_CERT_FILE replaces the whole bundle for that process.)

To stop trusting it: remove the copied file and run sudo update-ca-certificates --fresh;
certutil -d sql:$HOME/.pki/nssdb -D -n "{common_name}".
Keep {paths.key} private:
whoever has it can impersonate any site to the clients that trust this root.
"""


# --- the root ---------------------------------------------------------------------------


def _load_or_create_ca(paths: CAPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA's certificate and key; created when absent. Call with the lock held."""
    _make_private_dir(paths.directory)
    now = datetime.now(UTC)
    if paths.cert.exists():
        cert, key = _load_ca(paths)
        if cert.not_valid_after_utc - now > _ROOT_RENEW_BEFORE:
            return cert, key
    # No root yet; a root.key without root.crt is a creation interrupted before the
    # certificate was written (it was never trusted by anyone), so it is replaced too.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_root(key, now)
    _write_atomic(paths.key, _key_pem(key), 0o600)
    _write_atomic(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _load_ca(paths: CAPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Read an existing root; anything wrong is the operator's call, so it is an error."""
    fix = f"move {paths.directory} aside to create a new CA (clients must then trust it again)"
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    except OSError as exc:
        raise InternalCAError(f"cannot read {paths.cert}: {exc.strerror}") from None
    except ValueError:
        raise InternalCAError(f"{paths.cert} is not a PEM certificate; {fix}") from None
    try:
        key_data = paths.key.read_bytes()
    except FileNotFoundError:
        raise InternalCAError(f"{paths.key} is missing beside {paths.cert}; {fix}") from None
    except OSError as exc:
        raise InternalCAError(f"cannot read {paths.key}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError):
        raise InternalCAError(f"{paths.key} is not an unencrypted PEM key; {fix}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or spki(key.public_key()) != spki(
        cert.public_key()
    ):
        raise InternalCAError(f"{paths.key} does not belong to {paths.cert}; {fix}")
    return cert, key


def _build_root(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    # CN is limited to 64 characters; long host names are cut, not refused.
    common_name = f"{_ROOT_ORG} - {socket.gethostname()}"[:64]
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ROOT_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage with only the given bits set (the others do not apply to EC keys here)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --- leaves -----------------------------------------------------------------------------


def _normalize_hosts(hosts: Sequence[str]) -> list[str]:
    """Lowercase, no trailing dot, IPs in canonical form, IPv6 unbracketed, deduplicated."""
    names: list[str] = []
    for raw in hosts:
        name = raw.strip().lower().removesuffix(".")
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            if not name or any(ch.isspace() or ch in "/:[]" for ch in name):
                raise ValueError(f"not a host name or IP address: {raw!r}") from None
            if not name.isascii():
                name = name.encode("idna").decode("ascii")
        if name not in names:
            names.append(name)
    return names


def _san(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def san_names(cert: x509.Certificate) -> set[str] | None:
    """The DNS (lowercased) and IP subjectAltNames; None when there is no such extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return names


def _build_leaf(
    names: Sequence[str],
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, _LEAF_ORG)]
    first = names[0]
    if len(first) <= 64:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, first))
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _leaf_reusable(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    names: Sequence[str],
    now: datetime,
) -> bool:
    """Whether the leaf on disk can be served as is; any doubt means issue a new one."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # unreadable, unparsable, another root's signature: all mean re-issue
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    return (
        spki(key.public_key()) == spki(cert.public_key())
        and cert.not_valid_after_utc - now > LEAF_RENEW_BEFORE
        and cert.not_valid_before_utc <= now
        and san_names(cert) == set(names)
    )


# --- files ------------------------------------------------------------------------------


def _make_private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700; the parents keep the umask's mode."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise InternalCAError(
            f"cannot create {path}: {exc.strerror} (set BEXT_STATE_DIR to a writable directory)"
        ) from None


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on `directory/.lock`; released when the fd closes.

    Polls instead of blocking so a stuck holder (a stopped process) turns into a clear
    error instead of a master that hangs at startup.
    """
    _make_private_dir(directory)
    lock_path = directory / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise InternalCAError(f"cannot open {lock_path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise InternalCAError(f"cannot lock {lock_path}: {exc.strerror}") from None
                if time.monotonic() > deadline:
                    raise InternalCAError(
                        f"another process has held {lock_path} for {_LOCK_TIMEOUT:.0f}s"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same directory and rename over `path`."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise InternalCAError(f"cannot write {path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def spki(public: PublicKeyTypes) -> bytes:
    """A public key as DER SubjectPublicKeyInfo, for equality checks."""
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()
