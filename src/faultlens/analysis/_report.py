"""``faultlens report``: the insights of a window as plain aligned tables in the terminal.

:func:`render_report` turns an :class:`~faultlens.analysis.Insights` into text
(no colours, no dependency: it reads the same in a terminal, a CI log or a
pipe); :func:`run_report` runs the ``faultlens report`` command::

    faultlens report --store sqlite:///faultlens.db --window 24h
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

import orjson

from faultlens.analysis._insights import (
    Insights,
    Trend,
    format_duration,
    insights,
)
from faultlens.errors import FaultlensError
from faultlens.redaction import neutralize_newlines, redact_text

__all__ = ["render_report", "run_report", "sparkline", "table"]

_ENV: Final = "FAULTLENS_STORE"
_DEFAULT: Final = "sqlite:///faultlens.db"
_RAMP: Final = " .:-=+*#%@"
_TITLE_CHARS: Final = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, indent: int = 2) -> str:
    """Rows under headers in aligned columns; numbers are right-aligned, text left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] in (None, "-") for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    widths = [
        max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)
    ]
    pad = " " * indent

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(widths[i]) if numeric[i] else value.ljust(widths[i])
            for i, value in enumerate(values)
        ]
        return (pad + "  ".join(parts)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return neutralize_newlines(str(value))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _clip(text: str | None, limit: int = _TITLE_CHARS) -> str:
    text = neutralize_newlines(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "~"


def _ttr(milliseconds: float | None) -> str | None:
    if milliseconds is None:
        return None
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.1f}s"
    return format_duration(milliseconds / 1000)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def sparkline(counts: Sequence[int]) -> str:
    """One ASCII character per bucket, from ``' '`` (none) to ``'@'`` (the most)."""
    peak = max(counts, default=0)
    if peak <= 0:
        return " " * len(counts)
    top = len(_RAMP) - 1
    return "".join(_RAMP[0] if n <= 0 else _RAMP[max(1, round(n / peak * top))] for n in counts)


def _trend_rows(trends: Sequence[Trend]) -> list[list[object]]:
    return [
        [str(t.key) if t.key is not None else "(none)", t.total, t.direction, sparkline(t.counts)]
        for t in trends
    ]


def render_report(data: Insights, *, source: str | None = None) -> str:
    """The insights as text: health, traffic, trends, issues, recovery, recommendations."""
    bucket = format_duration(data.bucket_seconds)
    title = f"faultlens report: last {format_duration(data.window)}"
    if source:
        title += f" of {source}"
    lines = [
        title,
        f"{_when(data.since)} -> {_when(data.until)}"
        + (f", tenant {data.tenant_id}" if data.tenant_id else ""),
        "",
    ]

    def section(name: str, body: str) -> None:
        lines.extend([name, body, ""])

    health = data.health
    section(
        f"Health {health.score:.1f}/100 ({health.status})",
        table(
            ["PART", "PENALTY", "FROM"],
            [
                [
                    "errors",
                    -health.error_penalty or 0.0,
                    f"{health.weighted_error_rate:.3f} weighted errors per operation",
                ],
                [
                    "recovery",
                    -health.recovery_penalty or 0.0,
                    f"success rate {_percent(data.recovery_success_rate)}",
                ],
                [
                    "correlation",
                    -health.correlation_penalty or 0.0,
                    f"missing {_percent(data.coverage.missing_share)}",
                ],
                [
                    "issues",
                    -health.issue_penalty or 0.0,
                    f"issues: {len(data.new_issues)} new, {len(data.regressed_issues)} "
                    f"regressed; patterns: {sum(1 for p in data.patterns if p.ongoing)} ongoing",
                ],
            ],
        ),
    )
    coverage = data.coverage
    section(
        "Traffic and reach",
        table(
            ["FIGURE", "VALUE"],
            [
                ["operations finished", data.operations],
                ["error events", data.errors],
                *[[f"  {severity}", n] for severity, n in data.errors_by_severity.items()],
                ["users affected", data.impact.users],
                ["sessions affected", data.impact.sessions],
                ["tenants affected", data.impact.tenants],
                [
                    "events with a correlation id",
                    f"{coverage.events_with_id}/{coverage.events}",
                ],
                [
                    "log lines with a correlation id",
                    f"{coverage.log_lines_with_id}/{coverage.log_lines}",
                ],
                ["correlation coverage", _percent(coverage.share)],
            ],
        ),
    )
    for by, label in (("category", "CATEGORY"), ("layer", "LAYER")):
        trends = data.trends_by(by)  # type: ignore[arg-type]
        section(
            f"Errors by {by} (one character per {bucket}, oldest first)",
            table([label, "EVENTS", "TREND", "PER BUCKET"], _trend_rows(trends))
            if trends
            else "  (no errors)",
        )
    issue_trends = {t.key: t for t in data.trends_by("issue")}
    section(
        "Top issues",
        table(
            ["ID", "TITLE", "CATEGORY", "LAYER", "SEVERITY", "EVENTS", "USERS", "STATUS", "TREND"],
            [
                [
                    top.issue.id,
                    _clip(top.issue.title),
                    top.issue.category,
                    top.issue.layer,
                    top.issue.severity,
                    top.events,
                    top.issue.users,
                    top.issue.status + (" (regressed)" if top.issue.regressed else ""),
                    issue_trends[top.issue.id].direction if top.issue.id in issue_trends else "-",
                ]
                for top in data.top_issues
            ],
        )
        if data.top_issues
        else "  (no issues)",
    )
    for name, issues in (
        ("New issues", data.new_issues),
        ("Regressed issues", data.regressed_issues),
    ):
        section(
            name,
            table(
                ["ID", "TITLE", "SEVERITY", "FIRST SEEN", "ALL EVENTS"],
                [
                    [i.id, _clip(i.title), i.severity, _when(i.first_seen), i.count]
                    for i in issues[:20]
                ],
            )
            + (f"\n  ... and {len(issues) - 20} more" if len(issues) > 20 else "")
            if issues
            else "  (none)",
        )
    section(
        f"Recovery (success rate {_percent(data.recovery_success_rate)})",
        table(
            [
                "POLICY",
                "NAME",
                "CALLS",
                "FIRST TIME",
                "RECOVERED",
                "FAILED",
                "REJECTED",
                "SUCCESS",
                "MEAN ATTEMPTS",
                "MEAN TTR",
            ],
            [
                [
                    r.policy,
                    _clip(r.name, 40),
                    r.calls,
                    r.first_time,
                    r.recovered,
                    r.failed,
                    r.rejected,
                    _percent(r.success_rate),
                    None if r.mean_attempts is None else round(r.mean_attempts, 2),
                    _ttr(r.mean_time_to_recover_ms),
                ]
                for r in data.recovery
            ],
        )
        if data.recovery
        else "  (no recovery events)",
    )
    if data.patterns:
        section(
            "Patterns",
            table(
                ["TYPE", "STATUS", "OCCURRENCES", "LAYERS", "CONFIDENCE", "LAST"],
                [
                    [
                        p.type.value,
                        p.status.value,
                        p.occurrences,
                        _clip(", ".join(p.layers), 40),
                        f"{p.confidence:.0%}",
                        _when(p.last_occurrence),
                    ]
                    for p in data.patterns
                ],
            ),
        )
    if data.recommendations:
        body = []
        for number, item in enumerate(data.recommendations, 1):
            body.append(f"  {number}. [{item.severity}] {_clip(item.message, 200)}")
            body.extend(f"       - {_clip(action, 200)}" for action in item.actions)
        section("Recommendations", "\n".join(body))
    else:
        section("Recommendations", "  (none)")
    return "\n".join(lines).rstrip() + "\n"


# --- the command ---------------------------------------------------------------------------


def run_report(args: argparse.Namespace, *, out: IO[str] | None = None) -> int:
    """Run ``faultlens report``; returns the exit status (1 when the store fails)."""
    from faultlens.store import open as open_store

    stream = out if out is not None else sys.stdout
    url = args.store or os.environ.get(_ENV) or _DEFAULT
    shown = redact_text(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            print(f"faultlens report: no store at {shown} (no such file)", file=sys.stderr)
            return 1
    try:
        with open_store(url, migrate=False) as store:
            data = insights(
                store,
                window=args.window,
                buckets=args.buckets,
                top=args.top,
                tenant_id=args.tenant,
                log_lines=(0, 0),  # this process wrote none of the application's lines
            )
    except FaultlensError as exc:
        print(f"faultlens report: {exc}", file=sys.stderr)
        return 1
    if args.json:
        stream.write(orjson.dumps(data.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        stream.write(render_report(data, source=shown))
    return 0
