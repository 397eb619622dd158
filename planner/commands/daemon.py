"""``planner daemon PIPELINE...``: start runs when due, by predicted intervals, for months.

The command only parses; the daemon is :mod:`planner.daemon` (which never imports the
command line, nor the web front end: ``--dashboard`` hands it a function that serves the
dashboard through :mod:`planner.web.server`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.commands.common import (
    add_dashboard_token_option,
    add_db_option,
    add_executor_option,
    add_models_option,
    dashboard_server,
    duration_type,
)

if TYPE_CHECKING:
    from planner.commands.common import DashboardFactory

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "daemon",
        help="run pipelines on their schedules (predicted intervals), retrain nightly",
        description="Lead each pipeline (one daemon per pipeline, however many run on the "
        "history), start its runs when due as `planner run` child processes, decide each "
        "next start from a plan made when a run ends, defer a start while another run is "
        "active, and retrain the models on a cron line. One log line per decision. "
        "SIGTERM/SIGINT: stop starting runs, wait for running ones (--grace), exit 0; "
        "SIGHUP: reload the pipeline files.",
    )
    parser.add_argument(
        "pipelines",
        nargs="+",
        metavar="PIPELINE",
        type=Path,
        help="pipeline file(s) (.yaml, .json, .toml)",
    )
    add_db_option(parser)
    add_models_option(parser)
    parser.add_argument(
        "--metrics",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)",
    )
    parser.add_argument(
        "--dashboard",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve the web dashboard of the history at http://HOST:PORT/ for the daemon's "
        "lifetime (e.g. 127.0.0.1:8765; off loopback it needs --dashboard-token)",
    )
    add_dashboard_token_option(parser, "--dashboard-token")
    parser.add_argument(
        "--log-json", action="store_true", help="log each decision as one JSON line"
    )
    parser.add_argument(
        "--retrain",
        metavar="CRON",
        default=None,
        help='when to retrain the models, a crontab line (default: "0 3 * * *"); "off": never',
    )
    parser.add_argument(
        "--grace",
        type=duration_type(allow_zero=False),
        default=None,
        metavar="DURATION",
        help="on SIGTERM/SIGINT, how long running runs may finish before the daemon leaves "
        "them to their leases and exits (default 60s)",
    )
    parser.add_argument(
        "--leader-ttl",
        type=duration_type(allow_zero=False),
        default=None,
        metavar="DURATION",
        help="how long a daemon's leadership of a pipeline lasts without a heartbeat: "
        "another daemon takes over that long after it dies (default 30s)",
    )
    add_executor_option(parser)
    parser.set_defaults(handler=handle)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _cron(text: str) -> str | None:
    if text.strip().lower() in {"off", "none", "never", ""}:
        return None
    from apscheduler.triggers.cron import CronTrigger

    from planner.errors import UsageError

    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        raise UsageError("--retrain", f"bad cron line {text!r}: {exc}") from None
    return text


def handle(args: argparse.Namespace) -> int:
    from planner import defaults
    from planner.daemon import DaemonOptions, DaemonSettings, serve

    settings = DaemonSettings(
        leader_ttl_s=args.leader_ttl or defaults.LEADER_TTL_S,
        stop_grace_s=args.grace if args.grace is not None else defaults.DAEMON_STOP_GRACE_S,
        retrain_cron=_cron(args.retrain) if args.retrain is not None else defaults.RETRAIN_CRON,
    )
    dashboard: DashboardFactory | None = None
    if args.dashboard is not None:  # checked before the daemon starts: exit 2 at once
        host, port = args.dashboard
        dashboard = dashboard_server(
            host, port, args.dashboard_token, token_flag="--dashboard-token"
        )
    options = DaemonOptions(
        files=args.pipelines,
        db=args.db,
        models=args.models,
        metrics=args.metrics,
        log_json=args.log_json,
        settings=settings,
        dashboard=dashboard,
        executor=args.executor,
    )
    return serve(options)
