"""The demo views. The e2e tests rely on every URL, status and JSON shape here.

The cache views (/products/, /products/async/, /lang/, /cookie/, /slow-cached/,
/stale-if-error/) say what bext's response cache may keep and for how long, with Django's
own decorators (``cache_control``, ``vary_on_headers``) and django-bext's ``cache_tags``;
each page carries a ``rendered`` id (uuid4) so that a copy served from the cache can be
told from a fresh one.

Streaming views (/stream, /events, /download) hand Django a synchronous iterator under
WSGI (Gunicorn) and an asynchronous one under ASGI (Uvicorn): Django consumes a
synchronous iterator under ASGI (and an asynchronous one under WSGI) into a list before
sending anything, which would defeat the point of streaming.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django.views.decorators.vary import vary_on_headers
from django_bext import cache_tags, untagged

from shop.forms import MessageForm
from shop.models import Message, Product
from shop.payload import apayload_chunks, payload_chunks, payload_sha256
from shop.uploads import HashingUploadHandler

STREAM_LINES = 10
STREAM_INTERVAL = 0.2
EVENT_COUNT = 5
EVENT_INTERVAL = 0.2
DOWNLOAD_DEFAULT_SIZE = 1024 * 1024
DOWNLOAD_MAX_SIZE = 2 * 1024 * 1024 * 1024
SLOW_MAX_SECONDS = 300.0
READ_CHUNK = 64 * 1024
SESSION_KEY = "last_message"
CACHED_SECONDS = 60
SLOW_CACHED_SECONDS = 0.5


def _is_asgi(request: HttpRequest) -> bool:
    return isinstance(request, ASGIRequest)


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=400)


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/index.html", {"server": "ASGI" if _is_asgi(request) else "WSGI"})


@require_http_methods(["GET", "HEAD", "POST"])
def message_form(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST ``message``: saved, then 302 to ``/form/?ok=1``."""
    if request.method == "POST":
        form = MessageForm(request.POST)
        if form.is_valid():
            text: str = form.cleaned_data["message"]
            Message.objects.create(text=text)
            request.session[SESSION_KEY] = text
            return HttpResponseRedirect(reverse("form") + "?ok=1")
        status = 400
    else:
        form = MessageForm()
        status = 200
    context = {
        "form": form,
        "ok": request.GET.get("ok") == "1",
        "last_message": request.session.get(SESSION_KEY),
        "recent": Message.objects.all()[:5],
    }
    return render(request, "shop/form.html", context, status=status)


def whoami(request: HttpRequest) -> JsonResponse:
    """What Django believes about the request after bext's X-Forwarded-* headers."""
    meta = request.META
    return JsonResponse(
        {
            "is_secure": request.is_secure(),
            "scheme": request.scheme,
            "host": request.get_host(),
            "x_forwarded_for": meta.get("HTTP_X_FORWARDED_FOR"),
            "x_real_ip": meta.get("HTTP_X_REAL_IP"),
            "remote_addr": meta.get("REMOTE_ADDR"),
            "method": request.method,
        }
    )


def _stream_lines() -> Iterator[bytes]:
    for n in range(1, STREAM_LINES + 1):
        if n > 1:
            time.sleep(STREAM_INTERVAL)
        yield f"chunk {n}\n".encode()


async def _astream_lines() -> AsyncIterator[bytes]:
    for n in range(1, STREAM_LINES + 1):
        if n > 1:
            await asyncio.sleep(STREAM_INTERVAL)
        yield f"chunk {n}\n".encode()


@require_safe
def stream(request: HttpRequest) -> StreamingHttpResponse:
    """Ten lines ``chunk 1\\n`` .. ``chunk 10\\n``, 0.2 s apart (no Content-Length)."""
    content = _astream_lines() if _is_asgi(request) else _stream_lines()
    response = StreamingHttpResponse(content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


def _event(n: int) -> bytes:
    return f"id: {n}\nevent: tick\ndata: event {n}\n\n".encode()


def _events() -> Iterator[bytes]:
    for n in range(1, EVENT_COUNT + 1):
        if n > 1:
            time.sleep(EVENT_INTERVAL)
        yield _event(n)


async def _aevents() -> AsyncIterator[bytes]:
    for n in range(1, EVENT_COUNT + 1):
        if n > 1:
            await asyncio.sleep(EVENT_INTERVAL)
        yield _event(n)


@require_safe
def events(request: HttpRequest) -> StreamingHttpResponse:
    """Server-sent events: five ``id: N / event: tick / data: event N`` messages, 0.2 s apart."""
    content = _aevents() if _is_asgi(request) else _events()
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _read_raw_body(request: HttpRequest) -> Iterator[bytes]:
    """The request body in chunks, without holding it in memory.

    Under WSGI Django only reads up to CONTENT_LENGTH, and reads nothing when the body is
    chunked; Gunicorn's ``wsgi.input`` decodes chunked bodies itself, so read it directly.
    """
    stream: Any = request
    if (
        not _is_asgi(request)
        and not request.META.get("CONTENT_LENGTH")
        and "wsgi.input" in request.META
    ):
        stream = request.META["wsgi.input"]
    while chunk := stream.read(READ_CHUNK):
        yield chunk


@csrf_exempt
@require_POST
def upload(request: HttpRequest) -> JsonResponse:
    """POST a raw body, or multipart with a file field ``file``: its size and SHA-256.

    Answers ``{"size": N, "sha256": "<hex>"}``. Nothing is stored: multipart files go
    through HashingUploadHandler, raw bodies are read 64 KiB at a time.
    """
    if request.content_type == "multipart/form-data":
        request.upload_handlers = [HashingUploadHandler(request)]
        uploaded = request.FILES.get("file")
        if uploaded is None:
            return _bad_request('multipart upload without a "file" field')
        return JsonResponse({"size": uploaded.size, "sha256": uploaded.sha256})
    hasher = hashlib.sha256()
    size = 0
    for chunk in _read_raw_body(request):
        hasher.update(chunk)
        size += len(chunk)
    return JsonResponse({"size": size, "sha256": hasher.hexdigest()})


@require_safe
def download(request: HttpRequest) -> HttpResponse:
    """``size`` bytes (default 1 MiB) of shop.payload, with Content-Length and
    ``X-Content-SHA256`` (hex SHA-256 of the body)."""
    raw = request.GET.get("size", str(DOWNLOAD_DEFAULT_SIZE))
    try:
        size = int(raw)
    except ValueError:
        return _bad_request("size must be an integer")
    if not 0 <= size <= DOWNLOAD_MAX_SIZE:
        return _bad_request(f"size must be between 0 and {DOWNLOAD_MAX_SIZE}")
    content = apayload_chunks(size) if _is_asgi(request) else payload_chunks(size)
    response = StreamingHttpResponse(content, content_type="application/octet-stream")
    response["Content-Length"] = str(size)
    response["X-Content-SHA256"] = payload_sha256(size)
    response["Content-Disposition"] = f'attachment; filename="payload-{size}.bin"'
    response["Cache-Control"] = "no-store"
    return response


@require_safe
async def slow(request: HttpRequest) -> HttpResponse:
    """Sleeps ``seconds`` (default 1, at most 300), then answers ``done``.

    Async, so that under Uvicorn slow requests wait concurrently instead of queueing on
    the one thread Django runs sync views on; under Gunicorn it holds a worker thread.
    """
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        return _bad_request("seconds must be a number")
    if not 0 <= seconds <= SLOW_MAX_SECONDS:
        return _bad_request(f"seconds must be between 0 and {SLOW_MAX_SECONDS:g}")
    await asyncio.sleep(seconds)
    return HttpResponse("done", content_type="text/plain; charset=utf-8")


# -- what bext's response cache keeps --------------------------------------------------------


def _rendered() -> str:
    return uuid.uuid4().hex


@require_safe
@cache_control(public=True, max_age=CACHED_SECONDS)
@cache_tags("products", Product)
def products(request: HttpRequest) -> HttpResponse:
    """The product list, cacheable for 60 s and tagged ``products, shop.product``: saving a
    Product purges it from bext (django-bext's automatic invalidation)."""
    context = {"products": Product.objects.all(), "view": "sync", "rendered": _rendered()}
    return render(request, "shop/products.html", context)


@require_safe
@cache_control(public=True, max_age=CACHED_SECONDS)
@cache_tags("products", Product)
async def products_async(request: HttpRequest) -> HttpResponse:
    """/products/ as an async view (the queryset read with ``async for``)."""
    items = [product async for product in Product.objects.all()]
    context = {"products": items, "view": "async", "rendered": _rendered()}
    return render(request, "shop/products.html", context)


@require_safe
@cache_control(public=True, max_age=CACHED_SECONDS)
@vary_on_headers("Accept-Language")
@cache_tags("lang")
def accept_language(request: HttpRequest) -> JsonResponse:
    """The Accept-Language this view saw: bext keeps one copy per value (``Vary``)."""
    return JsonResponse(
        {"accept_language": request.headers.get("Accept-Language"), "rendered": _rendered()}
    )


@require_safe
@untagged  # never stored, so nothing to purge (django_bext.W005 would ask for tags)
@cache_control(public=True, max_age=CACHED_SECONDS)
def sets_cookie(request: HttpRequest) -> JsonResponse:
    """Public and fresh for 60 s, but it sets a cookie: bext never stores it (unless the
    rule says ``cache_set_cookie = true``), or every client would get this one's cookie."""
    rendered = _rendered()
    response = JsonResponse({"rendered": rendered})
    response.set_cookie("demo_visit", rendered, max_age=3600, samesite="Lax")
    return response


@require_safe
@cache_control(public=True, max_age=CACHED_SECONDS)
@cache_tags("slow")
async def slow_cached(request: HttpRequest) -> JsonResponse:
    """Takes 0.5 s, cacheable for 60 s: concurrent misses for it wait for one fetch."""
    await asyncio.sleep(SLOW_CACHED_SECONDS)
    return JsonResponse({"rendered": _rendered()})


@require_safe
@cache_tags("stale-if-error")
def stale_if_error(request: HttpRequest) -> JsonResponse:
    """Fresh for 1 s; for 5 minutes after that bext may still serve it if the app fails
    (``stale-if-error``, RFC 5861), e.g. while Gunicorn is down."""
    response = JsonResponse({"rendered": _rendered()})
    response["Cache-Control"] = "public, max-age=1, stale-if-error=300"
    return response
