"""The ``faultlens`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _version() -> str:
    import faultlens

    return str(faultlens.__version__)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``faultlens`` command."""
    parser = argparse.ArgumentParser(
        prog="faultlens",
        description="Correlation, structured logging, errors and recovery for Python apps.",
    )
    parser.add_argument("--version", action="version", version=f"faultlens {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the demo workload and print correlated logs and a summary",
        description=(
            "Simulated users call a small ASGI shop concurrently; the shop uses operations, "
            "a thread pool, asyncio tasks and an outgoing call to an inventory service. "
            "Prints the JSON log lines, then a summary."
        ),
    )
    demo.add_argument("--users", type=_positive, default=4, help="concurrent users (default 4)")
    demo.add_argument("--requests", type=_positive, default=3, help="requests per user (default 3)")
    demo.add_argument(
        "--log-format", choices=("json", "console"), default="json", help="log line format"
    )
    demo.add_argument(
        "--quiet", action="store_true", help="print only the summary, not the log lines"
    )
    demo.add_argument(
        "--store",
        default="sqlite:///faultlens.db",
        metavar="URL",
        help="where events are recorded (default sqlite:///faultlens.db in this directory)",
    )
    from faultlens.store._cli import add_commands

    add_commands(commands)  # migrate, cleanup
    report = commands.add_parser(
        "report",
        help="print the insights of a time window: health, trends, issues, recovery",
        description=(
            "Read the store and print the insights of the last WINDOW as tables: the health "
            "score, traffic and users affected, error trends by category and layer, top, new "
            "and regressed issues, recovery effectiveness per policy, patterns and "
            "recommendations (docs/insights-and-alerts.md)."
        ),
    )
    report.add_argument(
        "--store",
        metavar="URL",
        help="store URL (default: $FAULTLENS_STORE, else sqlite:///faultlens.db)",
    )
    report.add_argument(
        "--window",
        metavar="DURATION",
        type=_duration,
        default="24h",
        help="how far back to look: 30m, 24h, 7d (default 24h)",
    )
    report.add_argument(
        "--buckets", metavar="N", type=_positive, default=24, help="trend buckets (default 24)"
    )
    report.add_argument(
        "--top", metavar="N", type=_positive, default=10, help="issues listed (default 10)"
    )
    report.add_argument("--tenant", metavar="ID", help="only this tenant's events")
    report.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _duration(text: str) -> float:
    from faultlens.analysis._insights import parse_duration
    from faultlens.errors import ConfigurationError

    try:
        return parse_duration(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``faultlens`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from faultlens.demo import run_demo

        return run_demo(
            users=args.users,
            requests=args.requests,
            log_format=args.log_format,
            quiet=args.quiet,
            store=args.store,
        )
    if args.command in ("migrate", "cleanup"):
        from faultlens.store._cli import run

        return run(args)
    if args.command == "report":
        from faultlens.analysis._report import run_report

        return run_report(args)
    parser.print_help(sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
