"""A generation: one configuration and everything the master built from it.

A reload builds a whole new :class:`Generation` (TLS contexts, listening sockets when the
listen plan changed, the compiled request pipeline, the access log, the health checks)
before it touches the running one. Only when every worker of the new generation listens
does it become current; the old one then drains. Rolling back (a build error, or workers
that do not start in time) means dropping the new object, so the running generation is
exactly what it was: a worker that crashes afterwards respawns with its own generation's
configuration, never a rejected one.

What belongs to whom: listening sockets are shared by reference between generations with
the same listen plan (a worker slot adopts socket *i* of each listener, for life), so a
generation closes only the listeners no other live generation uses. The access log and
the health checker are a generation's own: the master keeps a copy of the access log's
descriptor for the workers it forks, and closes it when the generation goes.
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bext.config import Config
from bext.master.health import HealthChecker, config_keys
from bext.master.listeners import BindError, Listener, ListenPlan, bind_plan
from bext.master.tls_setup import TLSSetupError, prepare_tls
from bext.observe.accesslog import AccessLog
from bext.protocol import h2_engine
from bext.runtime.spec import HTTPS, TLSMaterial
from bext.shm.health import retain
from bext.shm.layout import Segment
from bext.worker.pipeline import BuildError, Pipeline

INVALID = "invalid configuration"
"""How a refusal that is the configuration's fault starts (``bext reload`` exits 78)."""


class GenerationError(Exception):
    """A generation could not be built; the message says why, naming the config key.

    ``config_fault`` is False when the configuration is fine but the machine refused
    (an address in use, no more sockets): ``bext run`` then exits 1 rather than 78.
    """

    def __init__(self, message: str, config_fault: bool = True) -> None:
        super().__init__(message)
        self.config_fault = config_fault


@dataclass(eq=False)
class Generation:
    """One configuration, built whole, and what the master holds for it."""

    number: int
    config: Config
    tls: TLSMaterial | None
    """Built once per generation so its workers share session-ticket keys."""
    listeners: list[Listener]
    """May be the very objects of the generation before (same listen plan)."""
    health: HealthChecker
    pipeline: Pipeline
    """Compiled here, before the fork; every worker gets it copy-on-write."""
    access_log: AccessLog
    """The master's copy; workers inherit the descriptor."""
    worker_count: int
    deadline: float = 0.0
    """While it starts: when it is abandoned if its workers are not all ready."""
    waiters: list[socket.socket] = field(default_factory=list)
    """While it starts: ``bext reload`` clients waiting for the outcome."""

    @property
    def tls_port(self) -> int:
        """The TLS port actually bound (the config may say 0)."""
        return next((x.port for x in self.listeners if x.kind == HTTPS), 0)

    def urls(self) -> str:
        return ", ".join(listener.url for listener in self.listeners)

    def slot_sockets(self, slot: int) -> list[tuple[str, socket.socket]]:
        """Socket ``slot`` of every listener, with its kind: what worker ``slot`` serves."""
        return [(listener.kind, listener.sockets[slot]) for listener in self.listeners]

    def health_keys(self) -> set[int]:
        return config_keys(self.config)

    def close(self) -> None:
        """Stop its health probes and close the master's copy of its access log."""
        self.health.close()
        self.access_log.close()


def release(generation: Generation, survivors: Iterable[Generation], segment: Segment) -> None:
    """Drop ``generation``: close what it alone holds; the ``survivors`` keep theirs.

    Its listeners that no survivor uses are closed, its access log and health probes too,
    and the health-table entries that only its configuration named are released.
    """
    survivors = [s for s in survivors if s is not generation]
    kept = {id(listener) for s in survivors for listener in s.listeners}
    for listener in generation.listeners:
        if id(listener) not in kept:
            listener.close()
    generation.close()
    retain(segment, health_keys(survivors))


def health_keys(generations: Iterable[Generation]) -> set[int]:
    """The health-table keys that the configurations of ``generations`` name."""
    keys: set[int] = set()
    for generation in generations:
        keys |= generation.health_keys()
    return keys


def build_generation(
    number: int,
    config: Config,
    segment: Segment,
    *,
    base: Generation | None = None,
    keep_health: Collection[int] | None = None,
    adopt: list[Listener] | None = None,
) -> Generation:
    """Build everything ``config`` needs before any worker is forked.

    ``base`` is the running generation (None at start): with the same listen plan its
    listeners are shared (one more socket per added slot), otherwise new ones are bound.
    ``keep_health`` are the health-table keys live generations use; the others are
    released before this configuration claims its own (None: release nothing). ``adopt``
    are listeners inherited from an old master (binary upgrade).

    Raises :class:`GenerationError` for anything that goes wrong, unexpected exceptions
    included; everything built until then is undone, so ``base`` is exactly as it was.
    """
    workers = config.server.workers
    built = _Built()
    try:
        with _step("invalid TLS setup", "server.tls"):
            tls = prepare_tls(config)  # certificates are re-read for every generation
            if config.server.tls is not None or config.server.http2.h2c:
                h2_engine.preload(config.server.http2)  # shared, as below
            if config.server.tls is not None and config.server.tls.http3:
                # The workers import it only when HTTP/3 is on; imported here first, so
                # that they share its pages (aioquic, pyOpenSSL: about 15 MiB) with the
                # master instead of each holding a copy.
                importlib.import_module("bext.worker.h3_server")
        if keep_health is not None:
            retain(segment, {*keep_health, *config_keys(config)})
        built.health_keys = keep_health
        with _step(INVALID, "route_rules"):
            pipeline = Pipeline(config, segment)
        built.access_log = _open_access_log(config)
        with _step(INVALID, "upstreams"):
            health = built.health = HealthChecker(config, segment)
        listeners = _listeners(config, base, adopt, built)
    except BaseException:
        built.undo(segment, base)
        raise
    return Generation(number, config, tls, listeners, health, pipeline, built.access_log,
                      workers)  # fmt: skip


@dataclass
class _Built:
    """What a build has done so far, to undo it if a later step fails."""

    access_log: AccessLog | None = None
    health: HealthChecker | None = None
    health_keys: Collection[int] | None = None
    bound: list[Listener] = field(default_factory=list)
    grown: bool = False
    """The base's listeners got more sockets: trim them back."""

    def undo(self, segment: Segment, base: Generation | None) -> None:
        for listener in self.bound:
            listener.close()
        if self.grown and base is not None:
            for listener in base.listeners:
                listener.trim_slots(base.worker_count)
        if self.health is not None:
            self.health.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.health_keys is not None:
            retain(segment, self.health_keys)  # what this configuration claimed goes


def _listeners(
    config: Config, base: Generation | None, adopt: list[Listener] | None, built: _Built
) -> list[Listener]:
    workers = config.server.workers
    plan = ListenPlan.from_config(config.server)
    if adopt is not None:
        built.bound = adopt  # closed if the build fails: nobody else holds them
        with _adding_sockets():
            for listener in adopt:
                listener.ensure_slots(workers)
                listener.trim_slots(workers)
        return adopt
    if base is None or plan != ListenPlan.from_config(base.config.server):
        try:
            listeners = bind_plan(plan, workers)
        except BindError as exc:
            raise GenerationError(str(exc), config_fault=False) from exc
        except Exception as exc:
            raise GenerationError(f"cannot listen: {_describe(exc)}", False) from exc
        built.bound = listeners
        return listeners
    built.grown = True
    with _adding_sockets():
        for listener in base.listeners:
            listener.ensure_slots(workers)  # more workers: one more socket per slot
    return list(base.listeners)


def _open_access_log(config: Config) -> AccessLog:
    """Open ``log.access`` now, in the master: a path that cannot be opened refuses the
    generation at once instead of crashing every worker."""
    target = config.log.access
    try:
        return AccessLog(target, config.log.access_format)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise GenerationError(f"{INVALID}\nlog.access: cannot open {target}: {reason}") from exc
    except Exception as exc:
        raise GenerationError(
            f"{INVALID}\nlog.access: cannot open {target!r}: {_describe(exc)}"
        ) from exc


@contextmanager
def _adding_sockets() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise GenerationError(f"cannot add listening sockets: {_describe(exc)}", False) from exc


@contextmanager
def _step(what: str, key: str) -> Iterator[None]:
    """Turn whatever one build step raises into a :class:`GenerationError`.

    The master must never die on input it is given: an exception nobody expected (a
    ``ValueError`` from a NUL byte in a path, say) is a refused generation too.
    """
    try:
        yield
    except GenerationError:
        raise
    except (BuildError, TLSSetupError) as exc:  # their message names the key
        raise GenerationError(f"{what}\n{exc}") from exc
    except Exception as exc:
        raise GenerationError(f"{what}\n{key}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = [
    "INVALID",
    "Generation",
    "GenerationError",
    "build_generation",
    "health_keys",
    "release",
]
