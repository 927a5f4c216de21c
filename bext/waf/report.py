"""``bext waf report``: a summary of the WAF's audit log (``[waf] audit_log``).

The log is JSON lines as :class:`bext.waf.phase.AuditLog` writes them: ``time`` (UTC,
``2026-12-05T14:03:11Z``), ``client``, ``method``, ``uri``, ``action`` (``block`` or
``detect``) and ``rules`` (``id``, ``msg``, ...). Lines that are not such an object are
counted and skipped. The summary ends with a hint: the ``[[waf.exclusions]]`` entry that
would silence the most frequent rule on the paths it fires on, for when those are false
positives.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from bext.config.values import check_pattern
from bext.waf.engine import ANOMALY_RULES, VERDICT_RULES

__all__ = ["Summary", "exclusion_pattern", "format_summary", "summarize"]


@dataclass(slots=True)
class Summary:
    """What :func:`summarize` counted."""

    entries: int = 0
    blocked: int = 0
    detected: int = 0
    malformed: int = 0
    older: int = 0
    """Entries before the ``--since`` cut-off (not counted elsewhere)."""
    first: datetime | None = None
    last: datetime | None = None
    rules: Counter[int] = field(default_factory=Counter)
    messages: dict[int, str] = field(default_factory=dict)
    paths: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[int, str]] = field(default_factory=Counter)
    """(rule id, exclusion pattern) pairs, for the hint."""


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _path(uri: str) -> str:
    """The path of a request-target (origin or absolute form), without its query."""
    if uri.lower().startswith(("http://", "https://")):
        try:
            return urlsplit(uri).path or "/"
        except ValueError:
            pass
    return uri.partition("?")[0].partition("#")[0] or "/"


def exclusion_pattern(path: str) -> str | None:
    """The glob an exclusion for ``path`` would use: its first two segments and below
    (``/api/comments/17`` -> ``/api/comments/**``), ``/`` alone for the root; None if the
    path cannot be a pattern (spaces, glob characters: typical of attacks)."""
    segments = [segment for segment in path.split("/") if segment][:2]
    pattern = "/" + "/".join(segments) + "/**" if segments else "/"
    try:
        check_pattern(pattern)
    except ValueError:
        return None
    if any(segment in (".", "..") for segment in segments) or any(
        ch in pattern.removesuffix("/**") for ch in "*[]{}%\\\"'"
    ):
        return None
    return pattern


def summarize(lines: Iterable[str], since: datetime | None = None) -> Summary:
    """Count the audit log entries at or after ``since`` (all without it)."""
    summary = Summary()
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            summary.malformed += 1
            continue
        if not isinstance(entry, dict):
            summary.malformed += 1
            continue
        moment = _time(entry.get("time"))
        action = entry.get("action")
        rules = entry.get("rules", [])
        if moment is None or action not in ("block", "detect") or not isinstance(rules, list):
            summary.malformed += 1
            continue
        if since is not None and moment < since:
            summary.older += 1
            continue
        summary.entries += 1
        if action == "block":
            summary.blocked += 1
        else:
            summary.detected += 1
        summary.first = moment if summary.first is None else min(summary.first, moment)
        summary.last = moment if summary.last is None else max(summary.last, moment)
        uri = entry.get("uri")
        path = _path(uri) if isinstance(uri, str) else "-"
        summary.paths[path] += 1
        client = entry.get("client")
        summary.clients[client if isinstance(client, str) and client else "-"] += 1
        pattern = exclusion_pattern(path) if isinstance(uri, str) else None
        seen: set[int] = set()
        for rule in rules:
            rule_id = rule.get("id") if isinstance(rule, dict) else None
            if not isinstance(rule_id, int) or isinstance(rule_id, bool) or rule_id in seen:
                continue
            seen.add(rule_id)
            summary.rules[rule_id] += 1
            message = rule.get("msg")
            if isinstance(message, str) and message:
                summary.messages[rule_id] = message
            if pattern is not None and rule_id not in ANOMALY_RULES | VERDICT_RULES:
                summary.pairs[rule_id, pattern] += 1
    return summary


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_summary(summary: Summary, source: str, period: str, top: int = 10) -> list[str]:
    """The report's lines; ``period`` says which entries (``last 1h``, ``all entries``)."""
    lines = [f"WAF audit log {source} ({period}): {summary.entries} entries"]
    if summary.first is not None and summary.last is not None:
        lines[0] += f", {_stamp(summary.first)} to {_stamp(summary.last)}"
    lines.append(f"blocked: {summary.blocked}, detected (detect mode): {summary.detected}")
    if summary.malformed:
        plural = "line" if summary.malformed == 1 else "lines"
        lines.append(f"skipped: {summary.malformed} malformed {plural}")
    if not summary.entries:
        return lines
    lines.append("top rules:")
    width = len(str(max(summary.rules.values(), default=0)))
    for rule_id, count in summary.rules.most_common(top):
        lines.append(f"  {count:>{width}}  {rule_id}  {summary.messages.get(rule_id, '')}".rstrip())
    for title, counter in (("top paths:", summary.paths), ("top clients:", summary.clients)):
        lines.append(title)
        width = len(str(max(counter.values(), default=0)))
        lines.extend(f"  {count:>{width}}  {name}" for name, count in counter.most_common(top))
    if summary.pairs:
        (rule_id, pattern), count = summary.pairs.most_common(1)[0]
        lines.append(
            f"hint: rule {rule_id} fired {count} times on {pattern}; if those are false "
            "positives (legitimate requests), silence it there with:"
        )
        lines += ["  [[waf.exclusions]]", f"  pattern = {json.dumps(pattern)}",
                  f"  rule_ids = [{rule_id}]"]  # fmt: skip
    return lines
