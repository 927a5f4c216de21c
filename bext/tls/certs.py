"""Certificate material for a configuration: which files, for which hosts, and are they usable.

`resolve_certificates` turns `[server.tls]` into a `ResolvedCertificates` (the default pair,
the SNI entries in config order, warnings) or raises `TLSSetupError` listing every problem,
each prefixed with the config key it comes from ("server.tls.certificates[1].key: ...").
It checks what OpenSSL would only report as an opaque error at startup, or what clients
would only report at connect time: unreadable files, non-PEM data, swapped cert and key,
encrypted keys (a server starts unattended and cannot ask for a passphrase), a key that
belongs to another certificate, expired certificates, SNI hosts the certificate does not
name, and a leaf shipped without the intermediate that a public CA's chain needs.

The paths are kept (not only a loaded SSLContext) because aioquic has its own TLS stack:
the HTTP/3 engine loads the same PEM files, and can use `ResolvedCertificates.select` to
pick the pair for a server name with exactly the rules of the TCP listener.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import ssl
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID

from bext.routing.host import normalize_host
from bext.tls import internal_ca
from bext.tls.errors import TLSSetupError

if TYPE_CHECKING:
    from bext.config.schema import Config

__all__ = [
    "EXPIRY_WARNING",
    "ResolvedCertificates",
    "SNIEntry",
    "SNITable",
    "TLSSetupError",
    "resolve_certificates",
]

EXPIRY_WARNING = timedelta(days=14)
_MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SNIEntry:
    """A certificate served to clients that ask (SNI) for one of `hosts`.

    `hosts` are lowercase names or "*.example.com" patterns; `where` is the config key
    ("server.tls.certificates[0]") for error messages about this entry.
    """

    hosts: tuple[str, ...]
    cert: Path
    key: Path
    where: str


@dataclass(frozen=True, slots=True)
class ResolvedCertificates:
    """The checked certificate files for a TLS listener.

    `default_cert`/`default_key` are the default pair (clients without SNI, or asking for
    a name no entry lists); `sni` the per-host entries in config order. `internal_ca` is
    the local root when `tls = "internal"`. `expires` is the earliest notAfter among all
    certificates, for whoever wants to schedule a renewal.
    """

    default_cert: Path
    default_key: Path
    sni: tuple[SNIEntry, ...] = ()
    warnings: tuple[str, ...] = ()
    internal_ca: Path | None = None
    expires: datetime | None = None
    _table: SNITable[SNIEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_table", SNITable((e.hosts, e) for e in self.sni))

    @property
    def default(self) -> tuple[Path, Path]:
        """The default (cert, key) pair."""
        return self.default_cert, self.default_key

    def sni_paths(self) -> list[tuple[tuple[str, ...], Path, Path]]:
        """The SNI entries as plain (hosts, cert, key) tuples, in config order."""
        return [(entry.hosts, entry.cert, entry.key) for entry in self.sni]

    def select(self, server_name: str | None) -> tuple[Path, Path]:
        """The (cert, key) pair served for `server_name` (the default when None/unknown)."""
        entry = self._table.lookup(server_name)
        return (entry.cert, entry.key) if entry is not None else self.default

    def select_entry(self, server_name: str | None) -> SNIEntry | None:
        """The SNI entry for `server_name`, or None when the default pair is served."""
        return self._table.lookup(server_name)


class SNITable(Generic[T]):
    """Host name -> value, for SNI: exact names, then "*.example.com" patterns.

    Names are compared as `normalize_host` leaves them (case-insensitive, no trailing
    dot, IPv6 unbracketed). A wildcard matches exactly one
    label ("a.example.com", not "example.com" nor "a.b.example.com"), as certificate
    wildcards do (RFC 6125), so the entry chosen is one whose certificate can be valid.
    When several entries list the same host, the first one wins (config order). A lookup
    is one or two dict probes: this runs inside every TLS handshake.
    """

    __slots__ = ("_exact", "_wildcard")

    def __init__(self, items: Iterable[tuple[Iterable[str], T]]) -> None:
        self._exact: dict[str, T] = {}
        self._wildcard: dict[str, T] = {}
        for hosts, value in items:
            for host in hosts:
                name = normalize_host(host)
                if name.startswith("*."):
                    self._wildcard.setdefault(name[2:], value)
                else:
                    self._exact.setdefault(name, value)

    def lookup(self, server_name: str | None) -> T | None:
        """The value for `server_name`; None when nothing matches (serve the default)."""
        if not server_name:
            return None
        name = normalize_host(server_name)
        found = self._exact.get(name)
        if found is not None:
            return found
        label_end = name.find(".")
        if label_end > 0:
            return self._wildcard.get(name[label_end + 1 :])
        return None


def resolve_certificates(config: Config) -> ResolvedCertificates:
    """Check and return the certificate files `config.server.tls` names.

    With `tls.internal`, the default pair comes from bext's local CA (created and issued
    on demand, so this may write to `internal_ca.state_dir()`). Raises `TLSSetupError`
    with every problem found, and ValueError if the config has no TLS at all.
    """
    tls = config.server.tls
    if tls is None:
        raise ValueError("the configuration has no [server.tls]")
    report = _Report(now=datetime.now(UTC))
    root: Path | None = None
    default: _Checked | None
    if tls.internal:
        try:
            root = internal_ca.ensure_ca().cert
            cert, key = internal_ca.issue_leaf(internal_ca.internal_hosts(config))
        except (OSError, ValueError) as exc:
            raise TLSSetupError([f"server.tls: bext's local CA: {exc}"]) from None
        default = report.check_pair("server.tls", "server.tls", cert, key, public=False)
    elif tls.cert is None or tls.key is None:
        raise TLSSetupError(["server.tls: needs cert and key, or internal = true"])
    else:
        cert, key = tls.cert, tls.key
        default = report.check_pair("server.tls.cert", "server.tls.key", cert, key)

    entries: list[SNIEntry] = []
    checked: list[_Checked | None] = []
    for i, item in enumerate(tls.certificates):
        where = f"server.tls.certificates[{i}]"
        hosts = tuple(normalize_host(host) for host in item.hosts)
        entries.append(SNIEntry(hosts, item.cert, item.key, where))
        checked.append(report.check_pair(f"{where}.cert", f"{where}.key", item.cert, item.key))
    if report.problems:
        raise TLSSetupError(report.problems)

    _check_sni_hosts(report, entries, checked)
    _check_route_hosts(report, config, default, entries, checked)
    leaves = [c.leaf for c in (default, *checked) if c is not None]
    return ResolvedCertificates(
        default_cert=cert,
        default_key=key,
        sni=tuple(entries),
        warnings=tuple(report.warnings),
        internal_ca=root,
        expires=min((leaf.not_valid_after_utc for leaf in leaves), default=None),
    )


# --- checking one pair ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Checked:
    """A certificate file that passed the checks: its first (leaf) certificate and names."""

    path: Path
    leaf: x509.Certificate
    names: frozenset[str]
    has_san: bool


@dataclass
class _Report:
    now: datetime
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def check_pair(
        self, cert_key: str, key_key: str, cert: Path, key: Path, *, public: bool = True
    ) -> _Checked | None:
        """Check one cert/key pair; problems and warnings are recorded, not raised.

        `cert_key`/`key_key` are the config keys to report under. `public` enables the
        checks that only make sense for certificates meant for arbitrary clients (missing
        intermediates, self-signed), off for the local CA's own leaves.
        """
        before = len(self.problems)
        chain = self._read_chain(cert_key, cert)
        private = self._read_key(key_key, key)
        if chain is None or private is None:
            return None
        leaf = chain[0]
        if internal_ca.spki(private.public_key()) != internal_ca.spki(leaf.public_key()):
            self.problems.append(f"{key_key}: does not match the certificate in {cert}")
            return None
        self._check_dates(cert_key, cert, leaf)
        if len(self.problems) > before:
            return None
        # What cryptography accepts OpenSSL may still refuse (a key type or signature
        # algorithm below its security level); find out now, with the key path attached.
        try:
            _try_load(cert, key)
        except ssl.SSLError as exc:
            self.problems.append(
                f"{cert_key}: OpenSSL refuses {cert} with {key}: {ssl_reason(exc)}"
            )
            return None
        except OSError as exc:
            self.problems.append(f"{cert_key}: cannot load {cert}: {exc.strerror or exc}")
            return None
        if public:
            self._check_chain(cert_key, cert, chain)
        names, has_san = _names(leaf)
        return _Checked(cert, leaf, names, has_san)

    def _read_chain(self, where: str, path: Path) -> list[x509.Certificate] | None:
        data = self._read(where, path)
        if data is None:
            return None
        if b"-----BEGIN CERTIFICATE-----" not in data:
            self.problems.append(f"{where}: {_not_a_certificate(path, data)}")
            return None
        try:
            chain = x509.load_pem_x509_certificates(data)
        except ValueError:
            self.problems.append(
                f"{where}: {path} is not a valid PEM certificate (damaged or truncated base64)"
            )
            return None
        return chain

    def _read_key(self, where: str, path: Path) -> PrivateKeyTypes | None:
        data = self._read(where, path)
        if data is None:
            return None
        blocks = [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
        keys = [(label, block) for label, block in blocks if label.endswith(b"PRIVATE KEY")]
        if not keys:
            self.problems.append(f"{where}: {_not_a_key(path, data, blocks)}")
            return None
        label, block = keys[0]
        if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block:
            self.problems.append(
                f"{where}: {path} is encrypted with a passphrase, which bext cannot ask for "
                f"when it starts; decrypt it (openssl pkey -in {path} -out <new file>) "
                "and make the new file readable only by the user bext starts as"
            )
            return None
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except TypeError:  # encrypted in a way the PEM header did not show
            self.problems.append(f"{where}: {path} is encrypted with a passphrase; decrypt it")
            return None
        except Exception:  # ValueError, UnsupportedAlgorithm
            self.problems.append(f"{where}: {path} is not a valid PEM private key")
            return None
        if isinstance(key, rsa.RSAPrivateKey) and key.key_size < _MIN_RSA_BITS:
            self.problems.append(
                f"{where}: the RSA key in {path} has {key.key_size} bits, too weak for "
                f"clients; use at least {_MIN_RSA_BITS}"
            )
            return None
        return key

    def _read(self, where: str, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except OSError as exc:
            self.problems.append(f"{where}: cannot read {path}: {exc.strerror or exc}")
            return None

    def _check_dates(self, where: str, path: Path, leaf: x509.Certificate) -> None:
        not_after = leaf.not_valid_after_utc
        if not_after <= self.now:
            self.problems.append(f"{where}: certificate expired on {not_after:%Y-%m-%d} ({path})")
        elif not_after - self.now <= EXPIRY_WARNING:
            days = (not_after - self.now).days
            self.warnings.append(
                f"{where}: certificate expires on {not_after:%Y-%m-%d}, in {days} "
                f"day{'' if days == 1 else 's'} ({path}); renew it"
            )
        not_before = leaf.not_valid_before_utc
        if not_before > self.now:
            self.warnings.append(
                f"{where}: certificate is not valid before {not_before:%Y-%m-%d %H:%M} UTC "
                f"({path}); clients will reject it until then (is the clock right?)"
            )

    def _check_chain(self, where: str, path: Path, chain: list[x509.Certificate]) -> None:
        """Warn about chains clients cannot build: reversed, self-signed, or leaf only."""
        leaf = chain[0]
        if len(chain) > 1 and leaf.issuer != chain[1].subject:
            self.warnings.append(
                f"{where}: the certificates in {path} are out of order; the server "
                "certificate must come first, then the certificate that issued it"
            )
        elif len(chain) == 1 and leaf.issuer == leaf.subject:
            self.warnings.append(
                f"{where}: {path} is self-signed; clients reject it unless they trust this "
                'exact certificate (for development, tls = "internal" is easier)'
            )
        elif len(chain) == 1 and _issued_by_public_intermediate(leaf):
            self.warnings.append(
                f"{where}: {path} holds only the server certificate, without the intermediate "
                f"certificate of its issuer ({leaf.issuer.rfc4514_string()}), so many clients "
                "cannot verify it; use the full-chain file (fullchain.pem with Let's Encrypt)"
            )


def _not_a_certificate(path: Path, data: bytes) -> str:
    """Why a file without a CERTIFICATE block is not one, as specifically as possible."""
    if b"PRIVATE KEY-----" in data:
        return f"{path} holds a private key, not a certificate (are cert and key swapped?)"
    if b"-----BEGIN" not in data:
        try:
            x509.load_der_x509_certificate(data)
        except ValueError:
            pass
        else:
            return (
                f"{path} is a DER (binary) certificate; bext needs PEM: "
                f"openssl x509 -inform der -in {path} -out <new file>.pem"
            )
    return f'{path} is not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)'


def _not_a_key(path: Path, data: bytes, blocks: list[tuple[bytes, bytes]]) -> str:
    """Why a file without a PRIVATE KEY block is not one, as specifically as possible."""
    if b"PRIVATE KEY-----" in data:
        return f"{path} is not a valid PEM private key (damaged or truncated)"
    if any(label == b"CERTIFICATE" for label, _ in blocks):
        return f"{path} holds a certificate, not a private key (are cert and key swapped?)"
    if b"-----BEGIN" not in data:
        try:
            serialization.load_der_private_key(data, password=None)
        except Exception:  # ValueError, TypeError (encrypted), UnsupportedAlgorithm
            pass
        else:
            return (
                f"{path} is a DER (binary) key; bext needs PEM: "
                f"openssl pkey -inform der -in {path} -out <new file>.pem"
            )
    return f'{path} is not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)'


def refuse_password() -> bytes:
    """load_cert_chain's password: without one, OpenSSL would prompt on the terminal for
    an encrypted key and hang an unattended start. An empty one just fails."""
    return b""


def _try_load(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key, password=refuse_password)


def ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason code in words: "EE_KEY_TOO_SMALL" -> "ee key too small"."""
    return (exc.reason or str(exc)).lower().replace("_", " ")


# --- names ------------------------------------------------------------------------------


def _names(cert: x509.Certificate) -> tuple[frozenset[str], bool]:
    """The certificate's DNS and IP subjectAltNames (canonical), and whether it has SANs."""
    names = internal_ca.san_names(cert)
    if names is None:
        return frozenset(), False
    return frozenset(normalize_host(name) for name in names), True


def _covers(names: frozenset[str], host: str) -> bool:
    """Whether a certificate naming `names` is valid for `host` (a name, pattern or IP).

    A "*.example.com" host needs the same wildcard; a plain name is covered by itself or
    by a wildcard for its parent (one label only).
    """
    try:
        return str(ipaddress.ip_address(host)) in names
    except ValueError:
        pass
    if host in names:
        return True
    if host.startswith("*."):
        return False
    _, dot, parent = host.partition(".")
    return bool(dot) and f"*.{parent}" in names


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _describe_names(names: frozenset[str]) -> str:
    listed = sorted(names)
    text = ", ".join(listed[:6])
    return text + (f" and {len(listed) - 6} more" if len(listed) > 6 else "")


def _check_sni_hosts(
    report: _Report, entries: Sequence[SNIEntry], checked: Sequence[_Checked | None]
) -> None:
    """Warnings about SNI hosts: not covered by the certificate, IPs, listed twice."""
    first_listed: dict[str, str] = {}
    for entry, material in zip(entries, checked, strict=True):
        where = f"{entry.where}.hosts"
        if material is not None and not material.has_san:
            report.warnings.append(
                f"{entry.where}.cert: the certificate in {material.path} has no "
                "subjectAltName; clients ignore its common name and will reject it"
            )
            material = None
        for host in entry.hosts:
            if host in first_listed:
                report.warnings.append(
                    f"{where}: {host} is also listed in {first_listed[host]}, which is used"
                )
                continue
            first_listed[host] = entry.where
            if _is_ip(host):
                report.warnings.append(
                    f"{where}: {host} is an IP address, which clients never send in SNI; "
                    "connections by address get the default certificate"
                )
            elif material is not None and not _covers(material.names, host):
                report.warnings.append(
                    f"{where}: {host} is not covered by the certificate in {material.path} "
                    f"(it names {_describe_names(material.names)}); clients will reject it"
                )


def _check_route_hosts(
    report: _Report,
    config: Config,
    default: _Checked | None,
    entries: Sequence[SNIEntry],
    checked: Sequence[_Checked | None],
) -> None:
    """Warn about route hosts whose certificate (the one SNI picks) does not name them."""
    table = SNITable(
        (entry.hosts, (entry, material)) for entry, material in zip(entries, checked, strict=True)
    )
    seen: set[str] = set()
    for rule in config.route_rules:
        if rule.host is None:
            continue
        host = normalize_host(rule.host)
        if host in seen:
            continue
        seen.add(host)
        # A route wildcard is looked up as itself: SNITable maps "*.a.com" to the
        # wildcard entry, which is the one serving every name the route matches.
        found = None if _is_ip(host) else table.lookup(host)
        source, material = (
            ("the default certificate", default) if found is None else (found[0].where, found[1])
        )
        if material is None or not material.has_san or _covers(material.names, host):
            continue
        report.warnings.append(
            f"route_rules[{rule.index}].host: {host} gets {source} ({material.path}), "
            "which does not cover it; clients will reject it"
        )


# --- is the issuer an intermediate clients need? ----------------------------------------


def _issued_by_public_intermediate(leaf: x509.Certificate) -> bool:
    """Heuristic for "cert.pem instead of fullchain.pem".

    Public CAs issue from intermediates and say where to fetch them (Authority Information
    Access, caIssuers); browsers may fetch it, but curl, Python and Android do not. When
    the leaf points at its issuer that way and that issuer is not itself a root in the
    system trust store, the chain is missing. Private CAs (mkcert, trustme, the local CA)
    usually have no AIA, so they are not nagged about.
    """
    try:
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return False
    if not any(d.access_method == AuthorityInformationAccessOID.CA_ISSUERS for d in aia):
        return False
    return leaf.issuer.public_bytes() not in _system_roots()


@functools.cache
def _system_roots() -> frozenset[bytes]:
    """DER subject names of the roots in the default trust store (empty if unreadable)."""
    subjects: set[bytes] = set()
    try:
        ders = ssl.create_default_context().get_ca_certs(binary_form=True)
    except ssl.SSLError:
        return frozenset()
    with warnings.catch_warnings():  # old roots with non-positive serial numbers
        warnings.simplefilter("ignore")
        for der in ders:
            try:
                subjects.add(x509.load_der_x509_certificate(der).subject.public_bytes())
            except ValueError:
                continue
    return frozenset(subjects)
