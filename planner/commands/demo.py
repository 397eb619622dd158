"""``planner demo``: build a history from real runs of the demo pipeline, and say where.

The demo is a sequence of stages, each a function of a :class:`DemoContext`, all through
the service layer: the first writes a derived copy of ``data/examples/demo/demo.yaml``
into the state dir and runs it several times with varied quantities, each run by its plan
(:mod:`planner.service.demo`, which the analysts' notebooks use too); the second trains on
what was recorded and plans the next run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.commands.common import add_json_option, print_json, start_dashboard, wait_for_stop

if TYPE_CHECKING:
    from planner.config import Pipeline

__all__ = ["DEMO_RUNS", "STAGES", "DemoContext", "register", "run_demo"]

#: How many runs by default: one per quantity scale of the demo
#: (``planner.service.demo.DEMO_SCALES``, not imported here: ``planner --help`` stays cheap;
#: a test keeps the two equal).
DEMO_RUNS = 6


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the demo pipeline a few times to build a history",
        description="Run the demo pipeline (real work on generated data) several times "
        "with varied quantities, so that a history exists to learn from.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".planner-demo"),
        metavar="DIR",
        help="where the demo keeps its pipeline, history and logs (./.planner-demo)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=DEMO_RUNS,
        metavar="N",
        help=f"how many runs ({DEMO_RUNS})",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then serve the dashboard of the demo's history on 127.0.0.1 until Ctrl-C",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        metavar="PORT",
        help="the dashboard's port with --serve (8765; 0: a free one)",
    )
    add_json_option(parser)
    parser.set_defaults(handler=handle)


@dataclass
class DemoContext:
    """What the stages share: where things are, what was done, and how to report it."""

    state_dir: Path
    runs: int = DEMO_RUNS
    quiet: bool = False
    pipeline_file: Path | None = None
    pipeline: Pipeline | None = None
    db_url: str = ""
    document: dict[str, Any] = field(default_factory=dict)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


Stage = Callable[[DemoContext], None]


def stage_history(ctx: DemoContext) -> None:
    """Run the demo pipeline ``ctx.runs`` times with varied quantities, each by its plan."""
    from planner.service.demo import DemoRun, demo_pipeline, run_demo_history
    from planner.units import format_duration

    ctx.pipeline_file, ctx.pipeline = demo_pipeline(ctx.state_dir)
    n_tasks = ctx.pipeline.tasks_per_run()
    ctx.say(
        f"demo: running {ctx.pipeline_file} {ctx.runs} times ({n_tasks} tasks each: "
        "generate, gzip, hash, parse and sort CSV data per account)"
    )

    def report(run: DemoRun) -> None:
        result, plan, summary = run.outcome.result, run.outcome.plan, run.summary
        ctx.say(
            f"  run {run.number}/{ctx.runs} {result.run_id}: quantity x{run.factor}, "
            f"{result.status} in {format_duration(summary['duration_s'] or 0.0)} "
            f"(predicted {format_duration(plan.run.predicted_s)}, "
            f"concurrency {result.concurrency}, "
            f"{summary['retries']} retried attempt(s))"
        )

    ctx.db_url, done = run_demo_history(ctx.pipeline, ctx.runs, on_run=report)
    summaries = [run.summary for run in done]
    ctx.document["runs"] = summaries
    ctx.document["history"] = ctx.db_url
    ctx.document["pipeline"] = str(ctx.pipeline_file)
    ctx.say(f"history: {ctx.db_url}")
    ctx.say(f"  planner runs --pipeline {ctx.pipeline_file}")
    if summaries:
        ctx.say(f"  planner show {summaries[-1]['run_id']} --pipeline {ctx.pipeline_file}")


def stage_learn_and_plan(ctx: DemoContext) -> None:
    """Train on the history the demo made, plan the next run, and say when it starts."""
    from datetime import datetime

    from planner.display.plan import print_plan
    from planner.service import Instance
    from planner.service.planning import PlanRequest, make_plan
    from planner.service.training import train_frame

    if ctx.pipeline is None:
        return
    pipeline = ctx.pipeline
    runs = ctx.document.get("runs") or []
    last_start = datetime.fromisoformat(runs[-1]["started_at"]) if runs else None
    lines: list[str] = []

    def write(text: str) -> None:
        lines.append(text)
        ctx.say(text)

    with Instance.for_pipeline(pipeline, db=ctx.db_url or None) as instance:
        frame = instance.store.attempts_frame(pipeline=pipeline.name)  # training adds no rows
        result = train_frame(instance, frame, pipeline.name, quantile=pipeline.schedule.quantile)
        kind = "baselines only" if result.baselines_only else result.variant
        write(
            f"learn: trained on {result.rows_train} attempts ({kind}); model {result.model_id}"
            + (" is live" if result.promoted else f"; {result.current_id} stays live")
        )
        for message in result.messages:
            write(f"learn: {message}")
        plan = make_plan(instance, pipeline, PlanRequest(current_start=last_start), frame=frame)
        models = instance.models_dir
    print_plan(plan, brief=True, write=write)
    ctx.document["models"] = str(models)
    ctx.document["plan"] = {
        "predicted_s": plan.run.predicted_s,
        "bound_s": plan.run.bound_s,
        "concurrency": plan.concurrency,
        "interval_s": plan.interval.interval_s,
        "next_start": plan.interval.next_start.isoformat() if plan.interval.next_start else None,
    }
    ctx.say(f"  planner plan {ctx.pipeline_file}")


#: The demo's stages, in order; later parts append theirs.
STAGES: list[tuple[str, Stage]] = [
    ("history", stage_history),
    ("learn and plan", stage_learn_and_plan),
]


def run_demo(ctx: DemoContext, stages: list[tuple[str, Stage]] | None = None) -> dict[str, Any]:
    """Run every stage in order; returns the document they filled."""
    ctx.document.setdefault("state_dir", str(ctx.state_dir))
    for name, stage in stages if stages is not None else STAGES:
        t0 = time.monotonic()
        stage(ctx)
        ctx.document.setdefault("stages", []).append(
            {"stage": name, "seconds": round(time.monotonic() - t0, 2)}
        )
    return ctx.document


def handle(args: argparse.Namespace) -> int:
    if args.runs < 1:
        from planner.errors import UsageError

        raise UsageError("--runs", f"must be at least 1, got {args.runs}")
    ctx = DemoContext(state_dir=args.state_dir.resolve(), runs=args.runs, quiet=args.json)
    t0 = time.monotonic()
    document = run_demo(ctx)
    document["seconds"] = round(time.monotonic() - t0, 2)
    models = Path(document.get("models") or ctx.state_dir / "models")
    command = f"planner dashboard --db {ctx.db_url} --models {models}"
    document["dashboard"] = {"command": command, "url": None}
    server = None
    if args.serve:
        server = start_dashboard(ctx.db_url, models, "127.0.0.1", args.port, None)
        document["dashboard"]["url"] = server.url
    if args.json:
        print_json(document)
    else:
        ctx.say(f"demo done in {document['seconds']:.1f}s; everything is under {ctx.state_dir}")
        if server is None:
            ctx.say(f"dashboard: {command}")
        else:
            ctx.say(f"dashboard: {server.url} (Ctrl-C stops it; later: {command})")
    failed = any(r["status"] != "succeeded" for r in document.get("runs", []))
    if server is not None:
        with server:
            wait_for_stop()
    return 1 if failed else 0
