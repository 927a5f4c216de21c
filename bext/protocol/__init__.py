"""Sans-IO protocol state machines.

Nothing in this package touches a socket, a timer or an event loop: parsers take bytes and
return events, writers take response parts and return bytes. The worker's connection
objects do the I/O. This is what lets the same request pipeline serve HTTP/1.1, HTTP/2 and
HTTP/3 (ARCHITECTURE.md, decision 4).
"""
