"""The demo's history: the demo pipeline run several times, each run by its plan.

The use case behind ``planner demo`` (its first stage) and the analysts' notebooks
(:func:`ensure_demo_history`): :func:`demo_pipeline` writes a derived copy of
``data/examples/demo/demo.yaml`` into a state dir (absolute job paths, this Python, the
state dir itself), and :func:`run_demo_history` runs it ``runs`` times with the quantities
of every per-account step scaled by :data:`DEMO_SCALES` in turn (real work on generated
data: generate, gzip, hash, parse and sort CSV data per account).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import InputFileError

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.service.running import RunOutcome

__all__ = [
    "DEMO_DIR_ENV",
    "DEMO_PIPELINE",
    "DEMO_SCALES",
    "DemoRun",
    "default_demo_dir",
    "demo_history_url",
    "demo_pipeline",
    "demo_source",
    "ensure_demo_history",
    "run_demo_history",
    "scaled",
    "write_demo_pipeline",
]

#: The name of the demo pipeline (in ``data/examples/demo/demo.yaml``).
DEMO_PIPELINE = "demo"
#: The environment variable that says where the analysts' demo history lives.
DEMO_DIR_ENV = "PLANNER_DEMO_DIR"
#: Quantity multipliers of the demo's runs, in order (``planner demo`` makes one run per
#: factor by default).
DEMO_SCALES = (0.4, 0.8, 1.2, 0.6, 1.6, 1.0)
_CHECKOUT = Path(__file__).resolve().parents[2]


def demo_source() -> Path:
    """``data/examples/demo/demo.yaml`` of this checkout."""
    path = _CHECKOUT / "data" / "examples" / "demo" / "demo.yaml"
    if not path.is_file():
        raise InputFileError(str(path), "the demo pipeline is missing (run from a checkout)")
    return path


def default_demo_dir() -> Path:
    """``$PLANNER_DEMO_DIR``, else ``.planner-demo`` at the root of this checkout (where
    ``planner demo`` run from the project root keeps it), wherever Python runs from."""
    env = os.environ.get(DEMO_DIR_ENV)
    return Path(env).expanduser().resolve() if env else _CHECKOUT / ".planner-demo"


def demo_history_url(state_dir: Path) -> str:
    """The demo's history in ``state_dir``: ``<state_dir>/history.db``."""
    return f"sqlite:///{Path(state_dir).resolve() / 'history.db'}"


def write_demo_pipeline(state_dir: Path) -> Path:
    """The demo pipeline adapted to ``state_dir``: absolute job paths, this Python."""
    import yaml

    from planner.config.loader import read_raw

    source = demo_source()
    raw = read_raw(source)
    raw["state_dir"] = str(state_dir)
    work = str(state_dir / "work")
    for step in raw["steps"]:
        command = list(step["command"])
        if command and command[0] == "python":
            command[0] = sys.executable
        command = [
            str(source.parent / part) if part.startswith("jobs/") else part for part in command
        ]
        step["command"] = command
        step["env"] = {**step.get("env", {}), "DEMO_WORK_DIR": work}
    target = state_dir / "demo.yaml"
    header = f"# Written by `planner demo` from {source}; edit that file instead.\n"
    target.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return target


def demo_pipeline(state_dir: Path) -> tuple[Path, Pipeline]:
    """Create ``state_dir``, write the demo pipeline there and load it."""
    from planner.config import load_pipeline

    state_dir.mkdir(parents=True, exist_ok=True)
    path = write_demo_pipeline(state_dir)
    return path, load_pipeline(path)


def scaled(pipeline: Pipeline, factor: float) -> Pipeline:
    """``pipeline`` with every per-account step's quantity multiplied by ``factor`` (at
    least 1); the other steps keep theirs."""
    steps = tuple(
        s.model_copy(update={"quantity": max(1, round(s.quantity * factor))})
        if s.per_account
        else s
        for s in pipeline.steps
    )
    return pipeline.model_copy(update={"steps": steps})


@dataclass(frozen=True)
class DemoRun:
    """One finished run of the demo: its number (from 1), the quantity factor, the run and
    the plan it followed, and its ``planner runs --json`` summary with ``quantity_scale``
    and ``retries`` (attempts after the first) added."""

    number: int
    factor: float
    outcome: RunOutcome
    summary: dict[str, Any]


def run_demo_history(
    pipeline: Pipeline,
    runs: int = len(DEMO_SCALES),
    *,
    db: str | None = None,
    on_run: Callable[[DemoRun], None] | None = None,
) -> tuple[str, list[DemoRun]]:
    """Run ``pipeline`` ``runs`` times, the quantities scaled by :data:`DEMO_SCALES` in turn,
    each run by its plan (SIGINT/SIGTERM stop the run in progress: a cancelled run ends the
    series). ``db``: the history (default: the pipeline's, see
    :meth:`~planner.service.instance.Instance.for_pipeline`); ``on_run`` is called after
    each run. Returns the history's URL and the runs."""
    from planner.execution import RunRequest, handle_signals
    from planner.service.instance import Instance
    from planner.service.running import prepare_run
    from planner.service.views import run_summary

    done: list[DemoRun] = []
    with Instance.for_pipeline(pipeline, db=db) as instance:
        store = instance.store
        for number in range(runs):
            factor = DEMO_SCALES[number % len(DEMO_SCALES)]
            session = prepare_run(instance, scaled(pipeline, factor), RunRequest())
            with handle_signals(session.runner):
                outcome = session.execute()
            result = outcome.result
            record = store.get_run(result.run_id)
            assert record is not None
            plan = outcome.plan
            summary = run_summary(record, result.counts, (plan.run.predicted_s, plan.run.bound_s))
            summary["quantity_scale"] = factor
            summary["retries"] = sum(
                1 for a in store.attempts_for_run(result.run_id) if a.attempt > 1
            )
            run = DemoRun(number + 1, factor, outcome, summary)
            done.append(run)
            if on_run is not None:
                on_run(run)
            if result.status == "cancelled":
                break
        return store.url, done


def ensure_demo_history(state_dir: Path | str | None = None, runs: int = len(DEMO_SCALES)) -> str:
    """The URL of the demo's history in ``state_dir`` (default :func:`default_demo_dir`),
    made first by :func:`run_demo_history` (``runs`` runs) when it holds no run of the demo
    pipeline. The history is ``<state_dir>/history.db`` whatever ``$PLANNER_DB`` says; a
    file lock keeps two callers from making it at once."""
    import fcntl

    from planner.history import HistoryStore
    from planner.service.locations import history_exists

    folder = Path(state_dir).expanduser().resolve() if state_dir else default_demo_dir()
    url = demo_history_url(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".demo.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if history_exists(url):
            with HistoryStore(url) as store:
                if store.list_runs(DEMO_PIPELINE, limit=1):
                    return url
        _path, pipeline = demo_pipeline(folder)
        run_demo_history(pipeline, runs, db=url)
    return url
