"""Running work against its prediction: the run's ETA and the alert levels (pure).

A :class:`Watcher` is given the run's plan (each task's prediction and calibrated upper
bound, the run's, the step graph and the slots) and told what happens (a task started,
finished); :meth:`Watcher.evaluate` at ``now`` returns the ETA and the levels passed since
the last evaluation, each at most once per task or run and in order (a task that jumps
past warning and critical at once gets both). No clock is read and nothing is sent here:
the caller (:mod:`planner.service.monitor`) ticks it and posts what it returns.

The levels (``alerts`` in the pipeline file):

- run ``warning``: the ETA or the elapsed time passes ``warning`` x the run's bound, or
  the ETA passes the next scheduled start (a collision is coming);
- run ``critical``: the elapsed time passes ``critical`` x the run's bound; the text names
  the late tasks (step, account, elapsed vs bound);
- task ``warning``: the elapsed time passes ``warning`` x the task's bound **and** the
  task runs longer, against its prediction, than its peers did (the 90th percentile of
  actual / predicted of the step's tasks already finished in this run, 1.0 before any):
  a task that behaves like its peers does not warn, however the run goes as a whole
  (the run's own levels cover that); ``warning`` x bound alone would flag every task
  whose bound is tight (a bound of 1.25 x predicted puts 0.8 x bound at the prediction);
- task ``critical`` past ``critical`` x its bound, ``stuck`` past ``stuck`` x its bound;
- every task threshold also needs ``min_excess`` seconds of absolute excess, so that
  sub-second jitter never pages anyone.

A task planned at the default (no history) has no prediction and gets no threshold
alerts; the watcher says so once (:meth:`Watcher.start`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from planner.planning.makespan import schedule_graph

__all__ = ["Signal", "TaskKey", "Thresholds", "Watcher", "eta_seconds"]

TaskKey = tuple[str, str | None]
_ORDER = ("warning", "critical", "stuck")


@dataclass(frozen=True)
class Thresholds:
    """Fractions of the upper bound, and the absolute excess a task alert needs."""

    warning: float = 0.8
    critical: float = 1.0
    stuck: float = 2.0
    min_excess_s: float = 1.0


@dataclass(frozen=True)
class Signal:
    """One level passed: what the caller turns into an alert."""

    level: str  # "info" | "warning" | "critical"
    kind: str  # "run_late" | "run_collision" | "task_late" | "task_stuck" | "no_prediction"
    step: str | None
    account: str | None
    elapsed_s: float | None
    predicted_s: float | None
    bound_s: float | None
    text: str


@dataclass
class _Task:
    predicted_s: float
    bound_s: float
    known: bool
    started: float | None = None  # seconds since the run's start
    finished: float | None = None
    fired: set[str] = field(default_factory=set)


def eta_seconds(
    deps: Mapping[str, Sequence[str]],
    remaining: Mapping[str, Sequence[float]],
    slots: int,
) -> float:
    """How long the unfinished work still takes: ``remaining[step]`` holds the remaining
    predicted seconds of its unfinished tasks (running ones: predicted - elapsed, at least
    0), scheduled longest first on ``slots`` slots within the step graph (finished steps
    left out, a dependency on them is met)."""
    left = {s: list(v) for s, v in remaining.items() if v}
    if not left:
        return 0.0
    graph = {s: [d for d in deps.get(s, ()) if d in left] for s in left}
    return schedule_graph(graph, left, slots).makespan


class Watcher:
    """The ETA and alert levels of one run (see the module docstring)."""

    def __init__(
        self,
        *,
        tasks: Mapping[TaskKey, tuple[float, float, bool]],
        deps: Mapping[str, Sequence[str]],
        slots: int,
        run_predicted_s: float | None,
        run_bound_s: float | None,
        started_at: datetime,
        thresholds: Thresholds = Thresholds(),
        next_start: datetime | None = None,
    ) -> None:
        """``tasks``: ``{(step, account): (predicted_s, bound_s, known)}`` from the run's
        plan (``known`` False: planned at the default, no prediction)."""
        self.tasks = {k: _Task(p, b, known) for k, (p, b, known) in tasks.items()}
        self.deps = deps
        self.slots = max(1, slots)
        self.run_predicted_s = run_predicted_s
        self.run_bound_s = run_bound_s
        self.started_at = started_at
        self.thresholds = thresholds
        self.next_start = next_start
        self._run_fired: set[str] = set()
        self.eta: datetime | None = None

    # -- what happened -------------------------------------------------------------------

    def start(self) -> list[Signal]:
        """Said once at the start: tasks without a prediction get no threshold alerts."""
        unknown = [k for k, t in self.tasks.items() if not t.known]
        if not unknown:
            return []
        steps = sorted({k[0] for k in unknown})
        shown = ", ".join(steps[:5]) + (f" and {len(steps) - 5} more" if len(steps) > 5 else "")
        return [
            Signal(
                "info",
                "no_prediction",
                None,
                None,
                None,
                None,
                None,
                f"{len(unknown)} task(s) have no prediction (step(s) {shown}): no "
                "threshold alerts for them until they have history",
            )
        ]

    def task_started(self, key: TaskKey, at: datetime) -> None:
        task = self.tasks.get(key)
        if task is not None:
            task.started, task.finished = self._seconds(at), None

    def task_finished(self, key: TaskKey, at: datetime) -> None:
        task = self.tasks.get(key)
        if task is not None:
            task.finished = self._seconds(at)
            if task.started is None:
                task.started = task.finished

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, now: datetime) -> list[Signal]:
        """The levels passed since the last evaluation (and the ETA in ``self.eta``)."""
        t = self._seconds(now)
        remaining: dict[str, list[float]] = {}
        for (step, _account), task in self.tasks.items():
            if task.finished is not None:
                continue
            elapsed = 0.0 if task.started is None else t - task.started
            remaining.setdefault(step, []).append(max(task.predicted_s - elapsed, 0.0))
        eta_s = t + eta_seconds(self.deps, remaining, self.slots)
        self.eta = self.started_at + timedelta(seconds=eta_s)
        out = self._run_levels(t, eta_s)
        peers: dict[str, float] = {}  # per step, once per evaluation
        for key, task in self.tasks.items():
            if task.known and task.started is not None and task.finished is None:
                if key[0] not in peers:
                    peers[key[0]] = self._peer_ratio(key[0])
                out += self._task_levels(key, task, t - task.started, peers[key[0]])
        return out

    def _run_levels(self, t: float, eta_s: float) -> list[Signal]:
        bound, predicted = self.run_bound_s, self.run_predicted_s
        out: list[Signal] = []
        th = self.thresholds
        eta_text = f"ETA {self.eta:%H:%M:%S} UTC" if self.eta else "no ETA"
        fired = self._run_fired
        if bound is not None and "warning" not in fired and max(t, eta_s) > th.warning * bound:
            fired.add("warning")
            out.append(
                Signal(
                    "warning",
                    "run_late",
                    None,
                    None,
                    t,
                    predicted,
                    bound,
                    f"run is going long: {_s(t)} elapsed, {eta_text} (predicted "
                    f"{_s(predicted)}, bound {_s(bound)})",
                )
            )
        coming = self.next_start is not None and self.eta is not None and self.eta > self.next_start
        if coming and "collision" not in fired:
            fired.add("collision")
            out.append(
                Signal(
                    "warning",
                    "run_collision",
                    None,
                    None,
                    t,
                    predicted,
                    bound,
                    f"run will still be going at the next start "
                    f"{self.next_start:%Y-%m-%d %H:%M} UTC: {eta_text}",
                )
            )
        if bound is not None and "critical" not in self._run_fired and t > th.critical * bound:
            self._run_fired.add("critical")
            late = self._late(t)
            out.append(
                Signal(
                    "critical",
                    "run_late",
                    None,
                    None,
                    t,
                    predicted,
                    bound,
                    f"run past its bound: {_s(t)} elapsed (bound {_s(bound)}), {eta_text}; "
                    + (f"late: {late}" if late else "no task is past its own bound"),
                )
            )
        return out

    def _late(self, t: float) -> str:
        late = sorted(
            (
                (t - task.started - task.bound_s, key, t - task.started, task.bound_s)
                for key, task in self.tasks.items()
                if task.known and task.started is not None and task.finished is None
                if t - task.started > task.bound_s
            ),
            reverse=True,
        )
        parts = [f"{_label(key)} {_s(el)} vs bound {_s(b)}" for _, key, el, b in late[:5]]
        more = f" and {len(late) - 5} more" if len(late) > 5 else ""
        return ", ".join(parts) + more

    def _peer_ratio(self, step: str) -> float:
        """The 90th percentile of actual / predicted among the step's finished tasks."""
        ratios = [
            (task.finished - task.started) / task.predicted_s
            for (s, _a), task in self.tasks.items()
            if s == step and task.known and task.finished is not None
            if task.started is not None and task.predicted_s > 0
        ]
        return float(np.quantile(ratios, 0.9)) if ratios else 1.0

    def _task_levels(
        self, key: TaskKey, task: _Task, elapsed: float, peer_ratio: float
    ) -> list[Signal]:
        th = self.thresholds
        limits = {
            "warning": max(th.warning * task.bound_s, task.predicted_s * max(peer_ratio, 1.0)),
            "critical": th.critical * task.bound_s,
            "stuck": th.stuck * task.bound_s,
        }
        out: list[Signal] = []
        for name in _ORDER:
            if name in task.fired or elapsed < limits[name] + th.min_excess_s:
                continue
            task.fired.add(name)
            level = "critical" if name == "stuck" else name
            kind = "task_stuck" if name == "stuck" else "task_late"
            what = {
                "warning": "running long",
                "critical": "past its bound",
                "stuck": f"stuck? {elapsed / task.bound_s:.1f}x its bound",
            }[name]
            out.append(
                Signal(
                    level,
                    kind,
                    key[0],
                    key[1],
                    elapsed,
                    task.predicted_s,
                    task.bound_s,
                    f"{_label(key)} {what}: {_s(elapsed)} elapsed (predicted "
                    f"{_s(task.predicted_s)}, bound {_s(task.bound_s)})",
                )
            )
        return out

    def _seconds(self, at: datetime) -> float:
        return (at - self.started_at).total_seconds()


def _label(key: TaskKey) -> str:
    return f"{key[0]}[{key[1]}]" if key[1] else key[0]


def _s(seconds: float | None) -> str:
    from planner.units import format_duration

    return "?" if seconds is None else format_duration(seconds)
