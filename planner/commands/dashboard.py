"""``planner dashboard [--db URL] [--models DIR] [--host H] [--port P] [--token T]``: serve
the web dashboard of a history until Ctrl-C (SIGINT) or SIGTERM.

It prints one line with the address. Bound to loopback (the default, 127.0.0.1) it may
run without a token; bound anywhere else it refuses to start without one (exit 2). The
token comes from ``--token`` or ``$PLANNER_DASHBOARD_TOKEN`` and is never printed or
logged. The dashboard is read-only: nothing on it starts or stops work.
"""

from __future__ import annotations

import argparse
from typing import Any

from planner.commands.common import (
    add_dashboard_token_option,
    add_db_option,
    add_models_option,
    start_dashboard,
    wait_for_stop,
)

__all__ = ["DEFAULT_PORT", "register"]

DEFAULT_PORT = 8765


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="serve the web dashboard of a history (read-only)",
        description="Serve the dashboard: what runs and what comes next, each run's "
        "timeline against its plan, the history, the predictions' quality and the alerts, "
        "with a JSON API, /metrics and /healthz. Stops on Ctrl-C or SIGTERM.",
    )
    add_db_option(parser)
    add_models_option(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; any other needs a token)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default {DEFAULT_PORT}; 0: a free one)",
    )
    add_dashboard_token_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from planner.errors import UsageError
    from planner.service import resolve_target

    if not 0 <= args.port <= 65535:
        raise UsageError("--port", f"must be in 0..65535, got {args.port}")
    target = resolve_target(None, db=args.db, models=args.models)
    server = start_dashboard(target.db_url, target.models_dir, args.host, args.port, args.token)
    with server:
        guarded = "token required" if server.app.state.dashboard.guarded else "no token"
        print(f"dashboard: {server.url} (history {target.db_url}; {guarded})", flush=True)
        wait_for_stop()
    return 0
