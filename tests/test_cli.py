"""The faultlens command and the demo."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import faultlens
from faultlens.cli import main


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"faultlens {faultlens.__version__}"


def test_help_lists_demo(capsys: pytest.CaptureFixture[str]) -> None:
    """--help and no command both describe the demo command."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_bad_arguments_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid counts give a usage error, not a traceback."""
    with pytest.raises(SystemExit) as info:
        main(["demo", "--users", "0"])
    assert info.value.code == 2
    assert "between 1 and 1000" in capsys.readouterr().err


def test_demo_end_to_end(tmp_path: Path) -> None:
    """The demo runs in a fresh process, every line is JSON and carries a correlation id."""
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "faultlens.cli",
            "demo",
            "--users",
            "3",
            "--requests",
            "2",
            "--store",
            store,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    log_lines, _, summary = out.stdout.partition("\nfaultlens demo summary")
    lines = [orjson.loads(line) for line in log_lines.splitlines() if line.strip()]
    assert lines
    assert all(line.get("correlation_id") for line in lines)
    request_ids = {line["correlation_id"] for line in lines if line["logger"] == "faultlens.access"}
    assert len(request_ids) == 6
    inventory = {line["correlation_id"] for line in lines if line["logger"] == "demo.inventory"}
    assert inventory <= request_ids
    assert len(inventory) == 6
    assert "every line correlated" in summary
    assert "distinct correlation ids                     6" in summary
    scene = summary.partition("error scene")[2]
    for locale in ("en", "pt-BR"):
        for scenario, status in (("validation", 422), ("dependency down", 503), ("bug", 500)):
            assert re.search(rf"{scenario} +{locale} +{status} ", scene), (scenario, locale)
    assert scene.count("captured 1x") == 6
    assert "LEAKED" not in scene
    assert "sk_live" not in out.stdout
    recovery = summary.partition("recovery scene")[2]
    assert "recovered by retry after 3 calls" in recovery
    assert "closed -> open -> half_open -> closed" in recovery
    assert "degraded=True" in recovery
    stored = summary.partition("store scene")[2]
    assert "KeyError: 'report token=[REDACTED]'" in stored
    assert re.search(r"error +httpx.HTTPStatusError .*issue #\d+", stored)
    analysis = summary.partition("analysis scene: incident replay")[2]
    patterns, _, rest = analysis.partition("  alerts fired (")
    for kind in ("recurring", "burst", "cascade", "degradation"):
        assert re.search(rf"^    {kind} +\d+ min ago", patterns, re.MULTILINE), kind
    fired = int(rest.split(",", 1)[0])
    assert fired >= 2
    assert "critical critical_error_rate" in rest
    assert "verdict: every pattern type and 2+ alerts" in rest
    assert "faultlens report: last 2h" in rest
    assert "Recommendations" in rest
    assert (tmp_path / "demo.db").exists()


def test_demo_console_format(tmp_path: Path) -> None:
    """--log-format console prints readable lines (no JSON) and the summary."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "faultlens.cli",
            "demo",
            "--users",
            "1",
            "--requests",
            "1",
            "--log-format",
            "console",
            "--store",
            f"sqlite:///{tmp_path / 'demo.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert not first.startswith("{")
    assert "every line correlated" in out.stdout
