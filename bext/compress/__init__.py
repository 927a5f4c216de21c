"""On-the-fly response compression (brotli, gzip): a phase after the handler."""
