"""The ModSecurity engine with its compiled rules, and one request's inspection.

Built once per configuration in the master (about 50 ms for CRS 3.3's 870 rules) and
shared with the workers copy-on-write; a reload builds a new one and a rule set that does
not parse refuses the configuration with the engine's own message. Inspecting a request
is synchronous: ModSecurity holds the GIL for the whole evaluation (a benign GET with
browser fields costs about a millisecond at paranoia 1, a small form POST two and a half),
so a thread would not help.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bext.config.schema import WafConfig
from bext.waf.seclang import (
    SKIPPED_CRS_FILES,
    crs_rule_files,
    crs_version,
    engine_rules,
    extra_rule_files,
)

if TYPE_CHECKING:
    from libmodsecurity import RuleMessage

log = logging.getLogger("bext")

__all__ = ["EngineMissing", "Match", "RulesError", "Verdict", "WafEngine"]

_SCORE = re.compile(r"Total (?:Inbound )?Score: (\d+)")

ANOMALY_RULES = frozenset({949110, 959100, 980130, 980140})
"""CRS's scoring and reporting rules: they sum up the others, they are not findings."""

VERDICT_RULES = frozenset({949110, 959100, 200002})
"""Rules whose match means "block this": CRS's inbound and outbound anomaly thresholds,
and a request body the engine cannot parse. In ``detect`` mode they match without
blocking; below the threshold, matches of other rules are only the score."""


class EngineMissing(RuntimeError):
    """The ``libmodsecurity`` module is not installed."""


class RulesError(ValueError):
    """A rule file does not parse; the message is the engine's."""


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched: what the audit log and ``bext waf test`` show."""

    rule_id: int
    message: str
    severity: int
    data: str
    tags: tuple[str, ...]


@dataclass(slots=True)
class Verdict:
    """The engine's answer for one request."""

    status: int = 0
    """The status ModSecurity asks for (403, or 400 for a body it cannot parse); 0 to pass."""
    matches: list[Match] = field(default_factory=list)
    transaction_id: str = ""

    @property
    def blocked(self) -> bool:
        return self.status >= 400

    @property
    def exceeded(self) -> bool:
        """Whether the request would be blocked (blocked, or matched in detect mode)."""
        return self.blocked or any(match.rule_id in VERDICT_RULES for match in self.matches)

    @property
    def score(self) -> int | None:
        """The inbound anomaly score CRS reported (rules 949110 and 980130), if it did."""
        for match in self.matches:
            found = _SCORE.search(match.message)
            if found:
                return int(found.group(1))
        return None

    @property
    def findings(self) -> list[Match]:
        """The matches that are not CRS's own score keeping."""
        return [match for match in self.matches if match.rule_id not in ANOMALY_RULES]


def _import_engine() -> Any:
    try:
        import libmodsecurity
    except ImportError as exc:
        raise EngineMissing(
            "the ModSecurity engine is not installed: pip install 'bext[waf]' "
            "(PyPI libmodsecurity, x86_64 Linux)"
        ) from exc
    return libmodsecurity


class WafEngine:
    """ModSecurity, its rules, and how to run a request through them."""

    def __init__(self, config: WafConfig) -> None:
        """Load and compile the rules; raises :class:`EngineMissing`,
        :class:`FileNotFoundError` (no CRS, a missing rules file) or :class:`RulesError`."""
        module = _import_engine()
        self._module = module
        self.config = config
        files = crs_rule_files(config.crs)
        version = crs_version(config.crs)
        extra = extra_rule_files(config.rules)
        self.engine = module.ModSecurity()
        self.engine.set_connector_information("bext (ModSecurity connector)")
        self.engine.set_log_callback(_engine_log)
        self.rules = module.RulesSet()
        self.loaded = self._load_text(engine_rules(config, version), "[waf] settings")
        for path in [*files, *extra]:
            self.loaded += self._load_file(path)
        self.crs_version = ".".join(str(part) for part in version)
        skipped = ", ".join(f"{name} ({why})" for name, why in SKIPPED_CRS_FILES.items())
        log.info("waf: %d rules loaded (CRS %s from %s, paranoia %d, %s mode); skipped %s",
                 self.loaded, self.crs_version, config.crs, config.paranoia, config.mode,
                 skipped)  # fmt: skip

    def _load_text(self, text: str, origin: str) -> int:
        count = int(self.rules.load(text))
        if count < 0:
            raise RulesError(f"{origin}: {self.rules.get_parser_error().strip()}")
        return count

    def _load_file(self, path: Path) -> int:
        count = int(self.rules.load_from_uri(str(path)))
        if count < 0:
            raise RulesError(self.rules.get_parser_error().strip() or f"{path}: does not parse")
        return count

    def inspect(
        self,
        method: str,
        uri: str,
        http_version: str,
        headers: list[tuple[str, str]],
        body: bytes,
        client: tuple[str, int],
        server: tuple[str, int],
        transaction_id: str | None = None,
    ) -> Verdict:
        """Run one request through phases 1 and 2 (and the logging phase)."""
        transaction = self._module.Transaction(self.engine, self.rules, transaction_id)
        verdict = Verdict(transaction_id=transaction.id)
        transaction.process_connection(client[0], client[1], server[0], server[1])
        transaction.process_uri(uri, method, http_version)
        if not self._stopped(transaction, verdict):
            for name, value in headers:
                transaction.add_request_header(name, value)
            transaction.process_request_headers()
            if not self._stopped(transaction, verdict):
                if body:
                    transaction.append_request_body(body)
                transaction.process_request_body()
                self._stopped(transaction, verdict)
        transaction.process_logging()
        verdict.matches = [_match(message) for message in transaction.get_rule_messages()]
        return verdict

    @staticmethod
    def _stopped(transaction: Any, verdict: Verdict) -> bool:
        intervention = transaction.intervention()
        if intervention is not None and intervention.disruptive:
            verdict.status = int(intervention.status) or 403
            return True
        return False


def _match(message: RuleMessage) -> Match:
    return Match(
        rule_id=int(message.rule_id),
        message=str(message.message),
        severity=int(message.severity),
        data=str(message.data)[:200],
        tags=tuple(str(tag) for tag in message.tags),
    )


def _engine_log(text: str) -> None:
    """ModSecurity's own log lines (one per matched rule, Apache style): debug level, as
    bext writes the audit log and its own one-line summary itself."""
    log.debug("modsecurity: %s", text.strip())
