"""Admin endpoints under ``/__bext/``: answered by bext itself, for loopback or a token."""
