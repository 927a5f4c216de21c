"""Listening sockets: one SO_REUSEPORT socket per worker slot and address, held for life.

Each SO_REUSEPORT socket has its own accept queue and the kernel drops the connections
queued on one when it closes. So the master binds them once, before forking, and keeps every
one of them until it exits; worker *i* adopts socket *i* of each address. A worker that dies
or is replaced leaves its socket (and the connections queued on it) to its successor
(ARCHITECTURE.md, decision 1).

SO_REUSEPORT would also let a second ``bext run`` (or any process of the same user that
sets it) bind the same port and silently take half the connections. So before binding a
port this process does not hold yet, a probe socket binds the address *without*
SO_REUSEPORT: that fails with EADDRINUSE while anyone listens there (or, for UDP, holds it),
and the master refuses to start instead of sharing. The probe keeps SO_REUSEADDR on TCP,
so connections of a previous run still in TIME_WAIT do not count, and the same
IPV6_V6ONLY as the real sockets, so "::" and "0.0.0.0" stay separate. A binary upgrade
inherits its sockets and binds nothing; a reload that keeps a port never probes it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
import weakref
from dataclasses import dataclass, field

from bext.config.schema import ServerConfig
from bext.runtime.spec import HTTP, HTTPS, QUIC

log = logging.getLogger("bext")

BACKLOG = 2048

_UDP_BUFFER = 4 * 1024 * 1024
"""Receive/send buffer asked for on QUIC sockets; bursts of datagrams must not be dropped."""


class BindError(Exception):
    """A listening address could not be bound; the message says which and why."""


@dataclass
class Listener:
    """One listening address with a socket per worker slot."""

    host: str
    port: int
    kind: str = HTTP
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.kind == QUIC:
            return f"https://{host}:{self.port} (HTTP/3, udp)"
        return f"{self.kind}://{host}:{self.port}"

    def ensure_slots(self, slots: int) -> None:
        """Bind more sockets so that there is one per slot (more workers)."""
        while len(self.sockets) < slots:
            self.sockets.append(_bind_one(self.host, self.port, self.kind))

    def trim_slots(self, slots: int) -> None:
        """Close the sockets of slots that no longer exist (fewer workers).

        Connections queued on those sockets are dropped by the kernel (unless
        ``net.ipv4.tcp_migrate_req`` is set), which is why the worker count only shrinks
        when the operator asks for it.
        """
        while len(self.sockets) > slots:
            self.sockets.pop().close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


_held: weakref.WeakValueDictionary[int, Listener] = weakref.WeakValueDictionary()
"""The listeners this process holds (bound or inherited), by ``id``: ports it may bind
again without the probe (a reload that adds an address, port 0's second host)."""


def _holds(port: int, kind: str) -> bool:
    udp = kind == QUIC
    return any(
        listener.port == port and (listener.kind == QUIC) == udp and listener.sockets
        for listener in list(_held.values())
    )


def _probe(host: str, port: int, kind: str) -> None:
    """Raise OSError (EADDRINUSE) if another socket listens on (or, UDP, holds) the address.

    Bound without SO_REUSEPORT, so sharing the port is not an option for the probe.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    udp = kind == QUIC
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
        if not udp:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((host, port))


def _bind_one(host: str, port: int, kind: str = HTTP) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    udp = kind == QUIC
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # "::" must not also claim IPv4, so "0.0.0.0" can be listed beside it.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if udp:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, _UDP_BUFFER)
        elif hasattr(socket, "TCP_DEFER_ACCEPT"):
            # Hand a connection over only once the client has sent something (nginx's
            # "deferred", with its 1 s): an idle connect costs no worker a wake-up.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        sock.bind((host, port))
        if not udp:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class ListenPlan:
    """What to listen on, from `[server]` (and `[server.tls]`); compared across reloads."""

    hosts: tuple[str, ...]
    port: int
    tls_port: int | None = None
    http3: bool = False
    tolerate_missing_ipv6: bool = False

    @classmethod
    def from_config(cls, server: ServerConfig) -> ListenPlan:
        tls = server.tls
        return cls(
            server.host,
            server.port,
            tls.port if tls is not None else None,
            tls is not None and tls.http3,
            server.host_is_default,
        )


def bind_plan(plan: ListenPlan, slots: int) -> list[Listener]:
    """Bind every listener of ``plan`` with ``slots`` sockets each."""
    listeners = bind_listeners(plan.hosts, plan.port, slots, plan.tolerate_missing_ipv6)
    if plan.tls_port is None:
        return listeners
    try:
        return listeners + _bind_tls(plan, plan.tls_port, slots)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise


def _bind_tls(plan: ListenPlan, port: int, slots: int) -> list[Listener]:
    """The HTTPS listeners, and with HTTP/3 the QUIC (UDP) ones on the same port.

    With port 0 the TLS port is chosen first and the UDP side follows it; when that port
    is taken for UDP, a new one is tried (8 times in all).
    """
    tries = 8 if port == 0 else 1
    while True:
        tls = bind_listeners(plan.hosts, port, slots, plan.tolerate_missing_ipv6, HTTPS)
        if not plan.http3:
            return tls
        hosts = tuple(listener.host for listener in tls)
        try:
            return tls + bind_listeners(hosts, tls[0].port, slots, False, QUIC)
        except BindError:
            for listener in tls:
                listener.close()
            tries -= 1
            if not tries:
                raise


def bind_listeners(
    hosts: tuple[str, ...],
    port: int,
    slots: int,
    tolerate_missing_ipv6: bool,
    kind: str = HTTP,
) -> list[Listener]:
    """Bind ``slots`` sockets on every host. Port 0 picks one free port shared by all."""
    listeners: list[Listener] = []
    chosen = port
    try:
        for host in hosts:
            try:
                if chosen and not _holds(chosen, kind):
                    _probe(host, chosen, kind)
                first = _bind_one(host, chosen, kind)
            except OSError as exc:
                missing_v6 = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                if tolerate_missing_ipv6 and ":" in host and missing_v6:
                    log.warning("skipping %s: no IPv6 on this host (%s)", host, exc.strerror)
                    continue
                raise _bind_error(host, chosen, kind, exc) from exc
            chosen = first.getsockname()[1]
            listener = Listener(host, chosen, kind, [first])
            _held[id(listener)] = listener
            listeners.append(listener)
            try:
                listener.ensure_slots(slots)
            except OSError as exc:
                raise _bind_error(host, chosen, kind, exc) from exc
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    if not listeners:
        raise BindError("no address could be bound")
    return listeners


def _bind_error(host: str, port: int, kind: str, exc: OSError) -> BindError:
    what = "udp " if kind == QUIC else ""
    reason = exc.strerror
    if exc.errno == errno.EADDRINUSE:
        reason = f"port {port} is already in use by another process ({exc.strerror})"
    return BindError(f"cannot listen on {what}{host}:{port}: {reason}")


INHERIT_ENV = "BEXT_LISTEN_FDS"
"""Listening sockets handed to a new master by a binary upgrade (like nginx's ``NGINX``)."""


def export_listeners(listeners: list[Listener]) -> str:
    """Mark every socket inheritable and describe them for :func:`inherit_listeners`."""
    described = []
    for listener in listeners:
        for sock in listener.sockets:
            os.set_inheritable(sock.fileno(), True)
        described.append(
            {"host": listener.host, "port": listener.port, "kind": listener.kind,
             "fds": [sock.fileno() for sock in listener.sockets]}
        )  # fmt: skip
    return json.dumps(described)


def inherit_listeners(text: str) -> list[Listener]:
    """Adopt the sockets an old master passed on; they keep their accept queues."""
    listeners = []
    for entry in json.loads(text):
        listener = Listener(entry["host"], int(entry["port"]), entry.get("kind", HTTP))
        _held[id(listener)] = listener
        for fd in entry["fds"]:
            sock = socket.socket(fileno=int(fd))
            sock.set_inheritable(False)
            sock.setblocking(False)
            listener.sockets.append(sock)
        listeners.append(listener)
    return listeners
