"""Static and media files: ``render = "static"`` rules (STATIC_ROOT, MEDIA_ROOT)."""
