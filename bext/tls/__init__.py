"""TLS for bext: certificate files checked per config key (:mod:`bext.tls.certs`), the
listener's SSLContext (:mod:`bext.tls.context`), and a local CA for `tls = "internal"`
(:mod:`bext.tls.internal_ca`).

The master calls `resolve_certificates(config)` (raises `TLSSetupError`, returns warnings
to log), then `build_server_context(resolved, ["h2", "http/1.1"])` once, before forking,
so all workers share session-ticket keys (see `bext.tls.context`). The HTTP/3 engine
loads the same PEM files, from `ResolvedCertificates.default_cert`/`default_key`,
`sni_paths()` and `select(server_name)`.

This package imports nothing itself: the modules need `cryptography` (about 12 MiB), which
a configuration without a TLS listener never loads. Import from the module that holds
the name.
"""
