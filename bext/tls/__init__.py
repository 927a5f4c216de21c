"""TLS for bext: certificate files checked per config key, the listener's SSLContext, and a
local CA for `tls = "internal"`.

The master calls `resolve_certificates(config)` (raises `TLSSetupError`, returns warnings
to log), then `build_server_context(resolved, ["h2", "http/1.1"])` once, before forking,
so all workers share session-ticket keys (see `bext.tls.context`). The HTTP/3 engine
loads the same PEM files, from `ResolvedCertificates.default_cert`/`default_key`,
`sni_paths()` and `select(server_name)`.
"""

from bext.tls.certs import (
    ResolvedCertificates,
    SNIEntry,
    SNITable,
    TLSSetupError,
    resolve_certificates,
)
from bext.tls.context import DEFAULT_ALPN, build_server_context
from bext.tls.internal_ca import (
    CAPaths,
    InternalCAError,
    describe_ca,
    ensure_ca,
    internal_hosts,
    issue_leaf,
    state_dir,
)

__all__ = [
    "DEFAULT_ALPN",
    "CAPaths",
    "InternalCAError",
    "ResolvedCertificates",
    "SNIEntry",
    "SNITable",
    "TLSSetupError",
    "build_server_context",
    "describe_ca",
    "ensure_ca",
    "internal_hosts",
    "issue_leaf",
    "resolve_certificates",
    "state_dir",
]
