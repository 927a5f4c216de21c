"""Content-Type from a file name's extension.

A fixed table rather than :mod:`mimetypes`: the standard module reads ``/etc/mime.types``
and the Windows registry, so its answers change with the host (Debian's table says
``application/x-font-woff`` or nothing at all for fonts, and lacks ``avif``/``webmanifest``
on older systems). A static server must answer the same on every machine, and browsers
enforce some of these types (module scripts, ``nosniff`` stylesheets, wasm streaming
compilation), so a wrong guess breaks pages.

Text types carry ``charset=utf-8``: that is what Django's ``collectstatic`` output and
today's bundlers produce, and without it a browser guesses the encoding of a CSS or JS file
from its own heuristics. Unknown extensions get ``application/octet-stream`` (a download,
never content a browser would render as HTML).
"""

from __future__ import annotations

__all__ = ["DEFAULT_TYPE", "content_type"]

DEFAULT_TYPE = b"application/octet-stream"

_CHARSET = "; charset=utf-8"

_TYPES: dict[str, str] = {
    # documents and code
    "html": "text/html",
    "htm": "text/html",
    "xhtml": "application/xhtml+xml",
    "css": "text/css",
    # RFC 9239 makes text/javascript the one JavaScript type; browsers accept it for
    # classic and module scripts alike.
    "js": "text/javascript",
    "mjs": "text/javascript",
    "cjs": "text/javascript",
    "json": "application/json",
    "map": "application/json",  # source maps
    "jsonld": "application/ld+json",
    "geojson": "application/geo+json",
    "webmanifest": "application/manifest+json",
    "wasm": "application/wasm",
    "xml": "application/xml",
    "xsl": "application/xml",
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "ics": "text/calendar",
    "vtt": "text/vtt",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "pdf": "application/pdf",
    "rtf": "application/rtf",
    "epub": "application/epub+zip",
    # images
    "svg": "image/svg+xml",
    "svgz": "image/svg+xml",
    "png": "image/png",
    "apng": "image/apng",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jfif": "image/jpeg",
    "pjpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "heic": "image/heic",
    "heif": "image/heif",
    "ico": "image/vnd.microsoft.icon",
    "cur": "image/x-icon",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    # fonts
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "ttc": "font/collection",
    "eot": "application/vnd.ms-fontobject",
    # audio and video
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "mov": "video/quicktime",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "m3u8": "application/vnd.apple.mpegurl",
    "mpd": "application/dash+xml",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "weba": "audio/webm",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mid": "audio/midi",
    "midi": "audio/midi",
    # archives and downloads
    "zip": "application/zip",
    "gz": "application/gzip",
    "tgz": "application/gzip",
    "br": "application/x-brotli",
    "zst": "application/zstd",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
    "tar": "application/x-tar",
    "7z": "application/x-7z-compressed",
    "rar": "application/vnd.rar",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "apk": "application/vnd.android.package-archive",
}

# Types that are text in practice even though their top level is not "text/".
_TEXTUAL = frozenset(
    {
        "application/json",
        "application/ld+json",
        "application/geo+json",
        "application/manifest+json",
        "application/xml",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/yaml",
        "application/vnd.apple.mpegurl",
        "application/dash+xml",
        "image/svg+xml",
    }
)


def _with_charset(media: str) -> bytes:
    if media.startswith("text/") or media in _TEXTUAL:
        return (media + _CHARSET).encode("ascii")
    return media.encode("ascii")


_FIELDS: dict[str, bytes] = {ext: _with_charset(media) for ext, media in _TYPES.items()}
# svgz is gzip-compressed bytes: a charset would be meaningless, but the type must stay
# image/svg+xml for <img> to work (the server would also need Content-Encoding, which only
# an operator who knows their files can add through a rule's headers).
_FIELDS["svgz"] = b"image/svg+xml"


def content_type(name: str) -> bytes:
    """The Content-Type field value for file ``name`` (a base name or a path)."""
    dot = name.rfind(".")
    if dot < 0 or "/" in name[dot:]:
        return DEFAULT_TYPE
    return _FIELDS.get(name[dot + 1 :].lower(), DEFAULT_TYPE)
