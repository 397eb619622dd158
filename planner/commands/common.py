"""What several commands share: common options, where the history and models live, output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from planner.service import Instance
    from planner.web.server import DashboardServer

    class DashboardFactory(Protocol):
        def __call__(
            self, source: Instance | str, models: Path | None = None
        ) -> DashboardServer: ...


__all__ = [
    "add_dashboard_token_option",
    "add_db_option",
    "add_executor_option",
    "add_json_option",
    "add_models_option",
    "add_selection_options",
    "dashboard_server",
    "duration_type",
    "executor_flag",
    "positive_int",
    "print_json",
    "split_list",
    "start_dashboard",
    "wait_for_stop",
]


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy URL of the history (default: $PLANNER_DB, else <state_dir>/history.db)",
    )


def add_models_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        metavar="DIR",
        type=Path,
        help="model registry folder (default: $PLANNER_MODELS, else <state_dir>/models)",
    )


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--steps", type=split_list, metavar="ID,...", help="only these steps (comma-separated)"
    )
    parser.add_argument(
        "--with-deps", action="store_true", help="add the steps the selected ones depend on"
    )


def add_executor_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        type=executor_flag,
        metavar="WHERE",
        help="where tasks run: local (processes here) or dask://HOST:PORT (a Dask "
        "scheduler; needs pip install 'planner[dask]'); wins over the file's executor",
    )


def executor_flag(text: str) -> str:
    """An ``--executor`` value: ``local`` or ``dask://HOST:PORT`` (``tcp://``, ``tls://``)."""
    import re

    if text == "local" or re.fullmatch(r"(dask|tcp|tls)://[^\s/:]+:\d{1,5}", text):
        return text
    raise argparse.ArgumentTypeError(f"expected local or dask://HOST:PORT, got {text!r}")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` as ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def duration_type(*, allow_zero: bool) -> Callable[[str], float]:
    """An argparse ``type`` for a duration (``90``, ``1m30s``, ``2h``) in seconds, at
    least 0 (``allow_zero``) or longer than 0."""

    def parse(text: str) -> float:
        from planner.units import parse_duration

        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            least = ">= 0" if allow_zero else "longer than 0"
            raise argparse.ArgumentTypeError(f"must be {least}, got {text!r}")
        return seconds

    return parse


def add_dashboard_token_option(parser: argparse.ArgumentParser, flag: str = "--token") -> None:
    parser.add_argument(
        flag,
        metavar="T",
        default=None,
        help="the dashboard's access token (default: $PLANNER_DASHBOARD_TOKEN); with one, "
        "every request needs it; without one the dashboard serves on loopback only",
    )


def dashboard_server(
    host: str, port: int, token: str | None, *, token_flag: str = "--token"
) -> DashboardFactory:
    """A function serving the dashboard of an instance at ``host:port`` on a thread
    (``planner.web.server``; the CLI launches the web front end, never the other way
    round). The token is ``token`` or ``$PLANNER_DASHBOARD_TOKEN``, never printed.
    Checked now: UsageError off loopback without a token, or without the web extra."""
    import os

    from planner.errors import UsageError
    from planner.web.auth import TOKEN_ENV, check_binding

    if not 0 <= port <= 65535:
        raise UsageError(f"{host}:{port}", f"the port must be in 0..65535, got {port}")
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    check_binding(host, token, token_flag=token_flag)
    try:
        from planner.web.server import serve_dashboard
    except ImportError as exc:
        raise UsageError(
            "dashboard",
            f"the web dependencies are missing ({exc.name}): pip install -e '.[web]'",
        ) from None

    def serve(source: Instance | str, models: Path | None = None) -> DashboardServer:
        return serve_dashboard(source, host, port, models_dir=models, token=token)

    return serve


def start_dashboard(
    db_url: str, models: Path, host: str, port: int, token: str | None
) -> DashboardServer:
    """Serve the dashboard of the history at ``db_url`` (see :func:`dashboard_server`);
    UsageError as there, and for a history that does not exist (it is not created)."""
    from planner.errors import UsageError
    from planner.service import history_exists

    serve = dashboard_server(host, port, token)
    if not history_exists(db_url):
        raise UsageError(
            db_url, "no history there yet: run a pipeline (or planner demo) first, or give --db"
        )
    return serve(db_url, models)


def wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM (the handlers only set a flag), then restore them."""
    import signal
    import threading

    stop = threading.Event()
    wanted = (signal.SIGINT, signal.SIGTERM)
    old = {sig: signal.signal(sig, lambda _signum, _frame: stop.set()) for sig in wanted}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
