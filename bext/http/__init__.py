"""bext's HTTP-version-agnostic request/response model.

Handlers (respond, redirect, static, proxy) see only these types. HTTP/1.1, HTTP/2 and
HTTP/3 connections translate their protocol events into them, which is why a handler never
needs to know which version carried a request.
"""
