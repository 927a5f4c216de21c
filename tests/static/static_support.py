"""Helpers for the static file tests: pipelines from TOML, requests, bodies, collectstatic."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from bext.config import Config, parse_config
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.worker.pipeline import Pipeline
from demo.build import build_demo
from tests.support.django_app import django_env


def static_config(app_dir: Path, routes: str, extra: str = "", compression: bool = False) -> Config:
    """A config serving ``routes`` with app_dir ``app_dir``; compression off unless asked,
    so bodies are exactly the files (the on-the-fly compressor is tested elsewhere)."""
    enabled = "true" if compression else "false"
    text = f'[server]\napp_dir = "{app_dir}"\n[compression]\nenabled = {enabled}\n{extra}\n{routes}'
    return parse_config(tomllib.loads(text), base_dir=app_dir)


def pipeline(
    app_dir: Path, routes: str | None = None, extra: str = "", compression: bool = False
) -> Pipeline:
    if routes is None:
        routes = '[[route_rules]]\npattern = "/static/**"\nrender = "static"\n'
    return Pipeline(static_config(app_dir, routes, extra, compression))


def make_request(
    target: bytes | str,
    headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
) -> Request:
    """A Request as the HTTP/1.1 connection builds it (see H1Connection._on_head)."""
    if isinstance(target, str):
        target = target.encode()
    if isinstance(headers, dict):
        fields = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    else:
        fields = list(headers or [])
    return Request(
        method, target, fields, "1.1", "http", "127.0.0.1", 40000, 3000, EMPTY_BODY, 0.0, "t"
    )


def handle(
    pipe: Pipeline,
    target: bytes | str,
    headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
) -> Response:
    result = pipe.handle(make_request(target, headers, method))
    assert isinstance(result, Response), "the static handler never needs to wait"
    return result


def header(response: Response, name: str) -> str | None:
    """The value of field ``name`` (case-insensitive), None if absent; at most one allowed."""
    values = [v for k, v in response.headers if k.decode().lower() == name.lower()]
    assert len(values) <= 1, f"{name} sent {len(values)} times"
    return values[0].decode("latin-1") if values else None


def body(response: Response) -> bytes:
    """The whole body, whichever way it is carried; closes a file body's descriptor."""
    if response.file is not None:
        file = response.file
        try:
            data = os.pread(file.fd, file.count, file.offset)
        finally:
            file.close()
        assert len(data) == file.count
        return data
    if response.stream is not None:
        stream = response.stream

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in stream])

        data = asyncio.run(collect())
        assert response.content_length in (None, len(data))
        return data
    return response.body


def close(response: Response) -> None:
    if response.file is not None:
        response.file.close()


@functools.cache
def collected_static() -> Path:
    """A real ``manage.py collectstatic`` (ManifestStaticFilesStorage) of the demo project,
    built into a private folder so concurrent test runs and ``make demo`` do not interfere."""
    work = Path(tempfile.mkdtemp(prefix="bext-static-"))
    atexit.register(shutil.rmtree, work, True)
    root = build_demo(work)
    env = django_env()
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=root, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return root / "staticfiles"
