"""``bext waf test`` and ``bext waf report``: the real engine on Debian's CRS, offline.

Most cases call the command line's ``main`` in process (the engine compiles in about
50 ms); one runs ``python -m bext`` to check the entry point and the exit code end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bext.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main
from bext.waf.report import exclusion_pattern

SQLI = "/?id=1' OR '1'='1"


def write_config(folder: Path, waf: str = "") -> Path:
    path = folder / "bext.config.toml"
    path.write_text(f"[waf]\n{waf}\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# bext waf test


def test_sqli_in_the_query_is_blocked_with_its_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    code, out, _ = run_cli(capsys, "waf", "test", "-c", str(config), SQLI)
    assert code == EXIT_FAILURE
    assert "blocked (403)" in out
    assert "anomaly score: 5 (threshold 5)" in out
    [line] = [line for line in out.splitlines() if "942100" in line]
    assert "SQL Injection" in line and "ARGS:id" in line
    assert "949110" not in out  # CRS's score keeping is not a finding
    assert "GET /?id=1'%20OR%20'1'='1 (Host: localhost" in out


def test_an_ordinary_url_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "enabled = true")
    url = "https://shop.example/products/?page=2&sort=price"
    code, out, _ = run_cli(capsys, "waf", "test", "-c", str(config), url)
    assert code == EXIT_OK
    assert "passed" in out.splitlines()
    assert "Host: shop.example" in out and "rules matched" not in out
    assert "not enabled" not in out


def test_a_json_body_with_a_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    header = "Content-Type: application/json"
    attack = '{"name": "<img src=x onerror=alert(1)>"}'
    code, out, _ = run_cli(capsys, "waf", "test", "-c", str(config), "/api/items/",
                           "--header", header, "--data", attack)  # fmt: skip
    assert code == EXIT_FAILURE
    assert "POST /api/items/ (Host: localhost, 40 bytes body)" in out  # POST, as curl -d
    assert "941100" in out and "ARGS:json.name" in out  # the JSON body processor ran
    benign = tmp_path / "item.json"
    benign.write_text('{"name": "Blue mug", "price": "12.50", "tags": ["kitchen", "gift"]}')
    code, out, _ = run_cli(capsys, "waf", "test", "-c", str(config), "/api/items/",
                           "-H", header, "--data-file", str(benign), "--method", "put")  # fmt: skip
    assert code == EXIT_OK and "PUT /api/items/" in out and "passed" in out
    broken = run_cli(capsys, "waf", "test", "-c", str(config), "/api/items/",
                     "-H", header, "-d", '{"unterminated": ')  # fmt: skip
    assert broken[0] == EXIT_FAILURE and "blocked (400)" in broken[1]


def test_detect_mode_says_would_be_blocked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, 'mode = "detect"')
    code, out, _ = run_cli(capsys, "waf", "test", "-c", str(config), SQLI)
    assert code == EXIT_FAILURE
    assert "would be blocked (detect mode)" in out and "942100" in out
    assert "blocked (403)" not in out


def test_a_broken_rules_file_is_an_invalid_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "local.conf").write_text("SecRule ARGS\n")
    config = write_config(tmp_path, 'rules = ["local.conf"]')
    code, out, err = run_cli(capsys, "waf", "test", "-c", str(config), "/")
    assert code == EXIT_CONFIG and out == ""
    assert "bext: invalid configuration" in err
    assert "local.conf" in err and "syntax error" in err  # the engine's own message
    missing = write_config(tmp_path, f'crs = "{tmp_path}"')
    code, _, err = run_cli(capsys, "waf", "test", "-c", str(missing), "/")
    assert code == EXIT_CONFIG and "modsecurity-crs" in err


def test_an_invalid_configuration_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, 'mode = "sometimes"')
    code, _, err = run_cli(capsys, "waf", "test", "-c", str(config), "/")
    assert code == EXIT_CONFIG and "waf.mode" in err
    code, _, err = run_cli(capsys, "waf", "test", "-c", str(tmp_path / "absent.toml"), "/")
    assert code == EXIT_CONFIG and "no such file" in err


@pytest.mark.parametrize(
    "argv",
    [["example.com/"], ["/", "--header", "no colon"], ["/", "--method", "GE T"],
     ["/", "--data-file", "/nonexistent/body"]],
)  # fmt: skip
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    config = write_config(tmp_path)
    code, out, err = run_cli(capsys, "waf", "test", "-c", str(config), *argv)
    assert code == EXIT_USAGE and out == "" and err.startswith("bext waf test: ")


def test_python_m_bext_waf_test(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    run = subprocess.run([sys.executable, "-m", "bext", "waf", "test", "-c", str(config), SQLI],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "942100" in run.stdout and "Traceback" not in run.stderr
    both = subprocess.run([sys.executable, "-m", "bext", "waf", "test", "/", "--data", "a",
                           "--data-file", "b"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr


# bext waf report


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def entry(seconds_ago: float, uri: str, client: str, action: str, *rules: int) -> str:
    messages = {942100: "SQL Injection Attack Detected via libinjection",
                941100: "XSS Attack Detected via libinjection", 920350: "Host header is a numeric IP address"}  # fmt: skip
    return json.dumps({
        "time": stamp(seconds_ago), "id": "0123456789abcdef", "client": client, "method": "GET",
        "uri": uri, "host": "shop.example", "action": action,
        "status": 403 if action == "block" else None, "score": 5,
        "rules": [{"id": rule, "msg": messages[rule], "severity": 2, "data": "x", "tags": []}
                  for rule in rules],
    })  # fmt: skip


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    lines = [
        entry(7200, "/old/?q=1", "198.51.100.9", "block", 920350),  # two hours ago
        entry(300, "/search/?q=it's", "203.0.113.5", "block", 942100),
        entry(240, "/search/results?q=o'brien", "203.0.113.5", "block", 942100),
        entry(180, "/search/?q=a'b", "203.0.113.6", "detect", 942100),
        entry(120, "/comments/new", "203.0.113.5", "block", 941100, 942100),
        "{not json",
        '["a list"]',
        json.dumps({"time": "yesterday", "action": "block", "rules": []}),
        "",
        entry(60, "http://shop.example/search/?q=x'y", "203.0.113.7", "block", 942100),
    ]
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_report_counts_rules_paths_clients_and_hints(
    tmp_path: Path, audit_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, f'audit_log = "{audit_log.name}"')
    code, out, err = run_cli(capsys, "waf", "report", "-c", str(config))
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].startswith(f"WAF audit log {audit_log} (all entries): 6 entries")
    assert "blocked: 5, detected (detect mode): 1" in lines
    assert "skipped: 3 malformed lines" in lines
    top_rules = lines[lines.index("top rules:") + 1 :]
    assert top_rules[0].split() == ["5", "942100", "SQL", "Injection", "Attack", "Detected",
                                    "via", "libinjection"]  # fmt: skip
    assert {tuple(line.split()[:2]) for line in top_rules[1:3]} == {("1", "941100"),
                                                                   ("1", "920350")}  # fmt: skip
    paths = lines[lines.index("top paths:") + 1 :]
    assert paths[0].split() == ["3", "/search/"]  # query dropped, absolute form too
    assert ["1", "/search/results"] in [line.split() for line in paths]
    clients = lines[lines.index("top clients:") + 1 :]
    assert clients[0].split() == ["3", "203.0.113.5"]
    hint = lines.index("  [[waf.exclusions]]")
    assert lines[hint - 1].startswith("hint: rule 942100 fired 3 times on /search/**")
    assert lines[hint + 1 : hint + 3] == ['  pattern = "/search/**"', "  rule_ids = [942100]"]
    assert "Traceback" not in err


def test_report_since_keeps_recent_entries(
    audit_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "waf", "report", "--log", str(audit_log), "--since", "1h",
                           "--top", "1")  # fmt: skip
    assert code == EXIT_OK
    lines = out.splitlines()
    assert "(last 1h): 5 entries" in lines[0]
    assert "blocked: 4, detected (detect mode): 1" in lines
    assert "/old/" not in out and "920350" not in out and "198.51.100.9" not in out
    assert lines[lines.index("top rules:") + 2] == "top paths:"  # --top 1
    code, out, _ = run_cli(capsys, "waf", "report", "--log", str(audit_log), "--since", "2m")
    assert "(last 2m): 1 entries" in out and "203.0.113.7" in out
    code, out, _ = run_cli(capsys, "waf", "report", "--log", str(audit_log), "--since", "3d")
    assert "6 entries" in out


def test_report_usage_errors(
    tmp_path: Path, audit_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "enabled = true")
    code, out, err = run_cli(capsys, "waf", "report", "-c", str(config))
    assert code == EXIT_USAGE and out == ""
    assert "no audit log" in err and "--log" in err and "audit_log" in err
    code, _, err = run_cli(capsys, "waf", "report", "--log", str(audit_log), "--since", "soon")
    assert code == EXIT_USAGE and "--since" in err
    code, _, err = run_cli(capsys, "waf", "report", "--log", str(tmp_path / "absent.jsonl"))
    assert code == EXIT_FAILURE and "cannot read" in err
    with pytest.raises(SystemExit) as exited:
        main(["waf", "report", "--log", str(audit_log), "--top", "0"])
    assert exited.value.code == EXIT_USAGE


def test_report_of_an_empty_or_garbage_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'\xff\xfe garbage\n{"time": 3, "action": "block"}\n\n')
    code, out, err = run_cli(capsys, "waf", "report", "--log", str(log))
    assert code == EXIT_OK and err == ""
    assert ": 0 entries" in out and "skipped: 2 malformed lines" in out and "hint" not in out


@pytest.mark.parametrize(
    ("path", "pattern"),
    [("/search/", "/search/**"), ("/api/comments/17", "/api/comments/**"), ("/", "/"),
     ("/wp-login.php", "/wp-login.php/**"), ("/static/../../etc/passwd", None),
     ("/a b/", None), ("/x%27/", None), ("/*/", None)],
)  # fmt: skip
def test_exclusion_patterns(path: str, pattern: str | None) -> None:
    assert exclusion_pattern(path) == pattern
