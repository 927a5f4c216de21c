"""An upload handler that hashes each file as it arrives and stores nothing."""

from __future__ import annotations

import hashlib
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class HashedUpload(UploadedFile):
    """What ``request.FILES[...]`` holds: the size and SHA-256, without the content."""

    def __init__(self, name: str, content_type: str, size: int, sha256: str) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.sha256 = sha256


class HashingUploadHandler(FileUploadHandler):
    """Feeds every chunk of every uploaded file into SHA-256 and drops it.

    Install it per request before ``request.POST``/``request.FILES`` is first read:
    ``request.upload_handlers = [HashingUploadHandler(request)]``.
    """

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._hasher = hashlib.sha256()
        self._size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self._hasher.update(raw_data)
        self._size += len(raw_data)
        return None  # consumed: no later handler sees the data

    def file_complete(self, file_size: int) -> HashedUpload:
        return HashedUpload(
            name=self.file_name or "",
            content_type=self.content_type or "application/octet-stream",
            size=self._size,
            sha256=self._hasher.hexdigest(),
        )
