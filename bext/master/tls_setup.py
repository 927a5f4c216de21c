"""TLS material for a configuration, prepared by the master before it forks workers.

The context is built here, not in the workers: OpenSSL creates the session-ticket keys
with the context, so workers forked from one master share them and a client resumes its
session whichever worker (SO_REUSEPORT socket) its next connection lands on. A reload
builds a new context from the certificate files as they are now, so renewed certificates
are picked up by the new generation while the old one finishes its connections.
"""

from __future__ import annotations

from bext.config import Config
from bext.observe.errorlog import log
from bext.runtime.spec import TLSMaterial
from bext.tls.errors import TLSSetupError

ALPN = ["h2", "http/1.1"]

__all__ = ["TLSMaterial", "TLSSetupError", "prepare_tls"]


def prepare_tls(config: Config) -> TLSMaterial | None:
    """Check and load the certificates; None when the config has no TLS listener.

    Raises :class:`TLSSetupError` with one line per problem, each naming its config key.
    """
    if config.server.tls is None:
        return None
    # Imported only for a TLS listener (cryptography), then shared with the workers.
    from bext.tls.certs import resolve_certificates
    from bext.tls.context import build_server_context

    resolved = resolve_certificates(config)
    for warning in resolved.warnings:
        log.warning("%s", warning)
    return TLSMaterial(build_server_context(resolved, ALPN), resolved)
