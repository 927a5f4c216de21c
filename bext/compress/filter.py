"""The compression phase (stub until the compression package lands)."""

from __future__ import annotations

from bext.config.schema import CompressionConfig
from bext.http.message import Request, Response


class Compressor:
    def __init__(self, config: CompressionConfig) -> None:
        self.config = config

    def apply(self, request: Request, response: Response) -> Response:
        """The response to send: ``response`` itself, or a compressed version of it."""
        return response
