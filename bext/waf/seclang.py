"""The SecLang bext gives ModSecurity: engine settings, the CRS setup, the exclusions.

The operator never edits ``crs-setup.conf``: what CRS needs from it (paranoia level,
inbound anomaly threshold, allowed methods, the setup version CRS checks for) is generated
from ``[waf]``, together with the engine directives of ModSecurity's recommended
configuration that matter to an inspecting proxy (request body access and its limit with
``ProcessPartial``, the JSON and XML body processors, a 400 for a body that cannot be
parsed) and one runtime rule per ``[[waf.exclusions]]`` entry. Audit logging is bext's own
(``SecAuditEngine Off``), and remote rules are never enabled: the wheel's bundled OpenSSL
is only used by ``SecRemoteRules``.

Then the CRS rule files load in their order, from ``<crs>/rules/*.conf``, except
``REQUEST-910-IP-REPUTATION.conf`` (it needs GeoIP, which the engine is built without).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from bext.config.schema import WafConfig, WafExclusion

__all__ = ["SKIPPED_CRS_FILES", "crs_rule_files", "crs_version", "engine_rules", "extra_rule_files"]

SKIPPED_CRS_FILES = {
    "REQUEST-910-IP-REPUTATION.conf": "needs GeoIP, which the ModSecurity engine bext uses lacks"
}

ALLOWED_METHODS = "GET HEAD POST OPTIONS PUT PATCH DELETE"
"""CRS's allowed methods (rule 911100): Django REST APIs use PUT, PATCH and DELETE too."""

_VERSION = re.compile(rb"ver:'OWASP_CRS/(\d+)\.(\d+)\.(\d+)'")
"""A rule's version action (not the comments, which name older releases too)."""
_FIRST_EXCLUSION_ID = 9_000_100
"""Rule ids bext gives its exclusion rules: in CRS's range for local exclusions."""


def crs_rule_files(crs: Path) -> list[Path]:
    """The CRS rule files to load, in order; raises FileNotFoundError naming what is
    missing and what to install."""
    rules = crs / "rules"
    files = sorted(rules.glob("*.conf")) if rules.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no OWASP CRS rules in {rules}: install Debian's modsecurity-crs "
            "(apt-get install modsecurity-crs) or set [waf] crs to an unpacked CRS release"
        )
    return [path for path in files if path.name not in SKIPPED_CRS_FILES]


def crs_version(crs: Path) -> tuple[int, int, int]:
    """The CRS release in ``crs`` (from its initialisation rules), e.g. (3, 3, 4)."""
    for path in sorted((crs / "rules").glob("REQUEST-901-*.conf")):
        match = _VERSION.search(path.read_bytes())
        if match:
            major, minor, patch = (int(part) for part in match.groups())
            return major, minor, patch
    raise FileNotFoundError(f"{crs}/rules has no REQUEST-901 initialisation file with a version")


def extra_rule_files(patterns: tuple[str, ...]) -> list[Path]:
    """``[waf] rules``: each glob expanded (sorted); one that matches nothing is an error,
    as a missing rules file would be in nginx."""
    files: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        found = [name for name in found if Path(name).is_file()]
        if not found:
            raise FileNotFoundError(f"{pattern}: no such rules file")
        files += [Path(name) for name in found]
    return files


def engine_rules(config: WafConfig, version: tuple[int, int, int]) -> str:
    """The directives that come before CRS: engine settings, CRS setup, exclusions."""
    engine = "On" if config.mode == "block" else "DetectionOnly"
    limit = config.body_limit
    setup_version = version[0] * 100 + version[1] * 10 + version[2]
    lines = [
        f"SecRuleEngine {engine}",
        "SecRequestBodyAccess On",
        f"SecRequestBodyLimit {limit}",
        f"SecRequestBodyNoFilesLimit {limit}",
        "SecRequestBodyLimitAction ProcessPartial",
        "SecResponseBodyAccess Off",  # responses are not inspected (phases 1 and 2 only)
        "SecArgumentSeparator &",
        "SecCookieFormat 0",
        "SecAuditEngine Off",
        "SecStatusEngine Off",
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^(?:application(?:/soap\\+|/)|text/)xml" '
        '"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"',
        'SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" '
        '"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"',
        # A body that does not parse is refused, unless it was only cut at body_limit (a
        # multipart or JSON body cut short never parses: that is not the client's fault).
        'SecRule REQBODY_ERROR "!@eq 0" '
        "\"id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.',"
        'chain"',
        f'    SecRule REQUEST_HEADERS:Content-Length "@le {limit}" "t:none"',
        'SecDefaultAction "phase:1,log,auditlog,pass"',
        'SecDefaultAction "phase:2,log,auditlog,pass"',
        _action(900000, f"tx.paranoia_level={config.paranoia}"),
        _action(
            900110,
            f"tx.inbound_anomaly_score_threshold={config.anomaly_threshold}",
            "tx.outbound_anomaly_score_threshold=4",
        ),
        _action(900200, f"'tx.allowed_methods={ALLOWED_METHODS}'"),
        _action(900990, f"tx.crs_setup_version={setup_version}"),
    ]
    for index, exclusion in enumerate(config.exclusions):
        lines.append(exclusion_rule(exclusion, _FIRST_EXCLUSION_ID + index))
    return "\n".join(lines) + "\n"


def _action(rule_id: int, *assignments: str) -> str:
    sets = ",".join(f"setvar:{assignment}" for assignment in assignments)
    return f'SecAction "id:{rule_id},phase:1,nolog,pass,t:none,{sets}"'


def exclusion_rule(exclusion: WafExclusion, rule_id: int) -> str:
    """A runtime exclusion (CRS's REQUEST-900 style): on paths the glob matches, remove the
    rules by id and by tag for this transaction."""
    controls = [f"ctl:ruleRemoveById={rule}" for rule in exclusion.rule_ids]
    controls += [f"ctl:ruleRemoveByTag={tag}" for tag in exclusion.tags]
    regex = glob_regex(exclusion.pattern).replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'SecRule REQUEST_FILENAME "@rx {regex}" '
        f'"id:{rule_id},phase:1,pass,nolog,t:none,{",".join(controls)}"'
    )


def glob_regex(pattern: str) -> str:
    """The route-rule glob as an anchored regex on the path: ``*`` stays within a segment,
    ``**`` spans segments (``/admin/**`` matches ``/admin`` and everything below)."""
    out = ["^"]
    index = 0
    while index < len(pattern):
        if pattern.startswith("/**", index):
            out.append("(?:/.*)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    out.append("$")
    return "".join(out)
