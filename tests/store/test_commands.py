"""``faultlens migrate`` and ``faultlens cleanup``."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import pytest

from faultlens.cli import main
from faultlens.store import open as open_store
from faultlens.store._cli import ProgressBar

from ._helpers import error, operation


def test_migrate_command(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """migrate applies the schema once, then says it is up to date."""
    assert main(["migrate", "--store", store_url]) == 0
    assert "applied migrations 1" in capsys.readouterr().out
    assert main(["migrate", "--store", store_url]) == 0
    assert "up to date" in capsys.readouterr().out


def test_migrate_reads_the_store_from_the_environment(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --store, FAULTLENS_STORE names the store."""
    monkeypatch.setenv("FAULTLENS_STORE", f"sqlite:///{tmp_path}/env.db")
    assert main(["migrate"]) == 0
    assert "env.db" in capsys.readouterr().out


def test_cleanup_command(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """cleanup deletes old events per its options and prints what went."""
    now = time.time()
    with open_store(store_url) as store:
        store.write_events(
            [error(timestamp=now - 2 * 86_400 - i, correlation_id="c") for i in range(30)]
            + [operation(timestamp=now - i, correlation_id="c") for i in range(15)]
        )
    argv = ["cleanup", "--store", store_url, "--older-than", "1d", "--max-rows-per-kind", "10"]
    assert main([*argv, "--batch-size", "7"]) == 0
    captured = capsys.readouterr()
    assert "deleted 35 events" in captured.out
    assert "(error 30, operation 5)" in captured.out
    assert "deleting events: 35/35 (100%)" in captured.err
    assert main(argv) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_cleanup_needs_a_rule(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --older-than or --max-rows-per-kind, cleanup refuses."""
    assert main(["cleanup", "--store", store_url]) == 2
    assert "say what to delete" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["cleanup", "--older-than", "soon"],
        ["cleanup", "--max-rows-per-kind", "0"],
        ["cleanup", "--batch-size", "x"],
    ],
)
def test_cleanup_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed options exit with status 2 and a message, not a traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_store_errors_are_reported_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unreachable or unknown store is one line on stderr and exit status 1."""
    assert main(["migrate", "--store", "mysql://x/y"]) == 1
    assert "scheme" in capsys.readouterr().err
    assert (
        main(["migrate", "--store", "postgresql://app:pw@127.0.0.1:1/db", "--timeout", "0.5"]) == 1
    )
    err = capsys.readouterr().err
    assert "reachable" in err
    assert ":pw@" not in err


def test_progress_bar_on_a_terminal() -> None:
    """On a terminal the bar redraws one line and ends it."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    bar = ProgressBar(out, "deleting")
    bar(0, 4)
    bar(4, 4)
    bar.finish()
    text = out.getvalue()
    assert text.startswith("\rdeleting [")
    assert "[" + "#" * 30 + "] 100% 4/4" in text
    assert text.endswith("\n")


def test_commands_are_listed_in_help() -> None:
    """faultlens --help lists migrate and cleanup (a fresh process, as users run it)."""
    out = subprocess.run(
        [sys.executable, "-m", "faultlens.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "migrate" in out
    assert "cleanup" in out
