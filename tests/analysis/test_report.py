"""``faultlens report``: the insights of the known dataset as terminal tables."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from faultlens.analysis import insights, render_report
from faultlens.analysis._report import sparkline, table
from faultlens.cli import main
from faultlens.store import open as open_store
from faultlens.testing import FakeClock

from ._insight_data import NOW, open_with_dataset


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store holding the known dataset."""
    location = f"sqlite:///{tmp_path / 'faultlens.db'}"
    store, _ = open_with_dataset(location)
    store.close()
    return location


def report(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``faultlens report`` at NOW; return the status, stdout and stderr."""
    with FakeClock(NOW):
        status = main(["report", "--store", url, *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def section(out: str, title: str) -> list[str]:
    """The lines of one section (from its title to the blank line after it)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_report_tables(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The report prints health, reach, trends, issues, recovery and recommendations."""
    status, out, err = report(url, "--window", "1h", "--buckets", "6", capsys=capsys)
    assert (status, err) == (0, "")
    assert out.splitlines()[:2] == [
        f"faultlens report: last 1h of {url}",
        "2023-11-14 22:00 UTC -> 2023-11-14 23:00 UTC",
    ]
    # The command counts no log lines of its own: 23 of 626 events miss an id.
    assert section(out, "Health") == [
        "Health 43.3/100 (unhealthy)",
        "  PART         PENALTY  FROM",
        "  -----------  -------  -----------------------------------------------",
        "  errors         -19.0  0.048 weighted errors per operation",
        "  recovery       -10.7  success rate 57.1%",
        "  correlation    -11.0  missing 3.7%",
        "  issues         -16.0  issues: 2 new, 1 regressed; patterns: 1 ongoing",
    ]
    reach = section(out, "Traffic and reach")
    assert "  operations finished              300" in reach
    assert "  users affected                   5" in reach
    assert "  events with a correlation id     603/626" in reach
    assert "  correlation coverage             96.3%" in reach
    assert section(out, "Errors by category") == [
        "Errors by category (one character per 10m, oldest first)",
        "  CATEGORY     EVENTS  TREND   PER BUCKET",
        "  -----------  ------  ------  ----------",
        "  integration       6  steady  @@@@@@",
        "  system            4  rising       @",
        "  validation        1  steady     @",
    ]
    top = section(out, "Top issues")
    assert top[3].split() == [
        "2",
        "A:",
        "payment",
        "declined",
        "integration",
        "service",
        "high",
        "6",
        "3",
        "unresolved",
        "steady",
    ]
    assert top[5].split()[-3:] == ["unresolved", "(regressed)", "steady"]
    assert section(out, "Recovery") == [
        "Recovery (success rate 57.1%)",
        "  POLICY           NAME       CALLS  FIRST TIME  RECOVERED  FAILED  REJECTED  SUCCESS  "
        "MEAN ATTEMPTS  MEAN TTR",
        "  ---------------  ---------  -----  ----------  ---------  ------  --------  -------  "
        "-------------  --------",
        "  circuit_breaker  inventory      2           0          0       0         2  -        "
        "            -  -",
        "  fallback         cache          5           0          3       2         0  60.0%    "
        "          1.0  10ms",
        "  retry            payments       5           3          1       1         0  50.0%    "
        "          2.5  2.1s",
    ]
    recommendations = section(out, "Recommendations")
    assert recommendations[1].startswith("  1. [critical] cascade pattern (ongoing)")
    assert recommendations[2] == "       - fix the database first"
    assert "  4. [high] issue 1 regressed: C: failure" in recommendations


def test_report_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the insights as JSON."""
    status, out, _ = report(url, "--window", "1h", "--json", capsys=capsys)
    assert status == 0
    data = orjson.loads(out)
    assert data["health"]["score"] == 43.3
    assert data["impact"] == {"errors": 11, "users": 5, "sessions": 3, "tenants": 1}
    assert [t["issue"]["id"] for t in data["top_issues"]] == [2, 3, 1]


def test_report_tenant(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--tenant limits the report to one tenant."""
    status, out, _ = report(
        url, "--window", "1h", "--buckets", "6", "--tenant", "acme", capsys=capsys
    )
    assert status == 0
    assert out.splitlines()[1].endswith(", tenant acme")
    assert ["system", "4", "rising", "@"] in [line.split() for line in out.splitlines()]


def test_report_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite file that does not exist is reported, not created."""
    missing = tmp_path / "nope.db"
    status, out, err = report(f"sqlite:///{missing}", capsys=capsys)
    assert (status, out) == (1, "")
    assert "no store at" in err
    assert not missing.exists()


def test_report_unmigrated_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store without the schema says to run faultlens migrate."""
    path = tmp_path / "empty.db"
    path.touch()
    status, _, err = report(f"sqlite:///{path}", capsys=capsys)
    assert status == 1
    assert "faultlens migrate" in err


def test_report_bad_window(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --window is an argument error."""
    with pytest.raises(SystemExit) as caught:
        report(url, "--window", "yesterday", capsys=capsys)
    assert caught.value.code == 2
    assert "not a duration" in capsys.readouterr().err


def test_empty_report() -> None:
    """An empty store reads as a clean bill of health."""
    with FakeClock(NOW), open_store("sqlite:///:memory:") as store:
        text = render_report(insights(store, window="1h", log_lines=(0, 0)))
    assert "Health 100.0/100 (healthy)" in text
    assert "  (no errors)" in text
    assert "  (no recovery events)" in text
    assert text.endswith("Recommendations\n  (none)\n")


def test_table_alignment() -> None:
    """Numbers align right, text left; missing values show as '-'; newlines are escaped."""
    assert table(["NAME", "N"], [["a", 1], ["bb\nc", 10], ["d", None]]).splitlines() == [
        "  NAME    N",
        "  -----  --",
        "  a       1",
        "  bb\\nc  10",
        "  d       -",
    ]


def test_sparkline() -> None:
    """One character per bucket, scaled to the busiest."""
    assert sparkline([0, 1, 5, 10]) == " .=@"
    assert sparkline([0, 0]) == "  "
