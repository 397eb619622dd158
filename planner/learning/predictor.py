"""The predictor: planned tasks in, a point prediction, an upper bound and a source out.

``Predictor.load(models_dir, pipeline, history)`` loads the pipeline's current model
through the registry (hash and library versions checked before unpickling). Then:

- a loaded model predicts every task (``source="model"``, or the baseline's name when the
  training kept a baseline); its bound is first brought up to date with the attempts of
  ``history`` that finished after the model's training data (adaptive conformal updates);
- when the model is missing or refused, a warning says why and the grouped last-2/last-10
  baselines, fitted on ``history`` at load with a conformal bound, predict instead
  (``source="last2:step,account"``...);
- with no finished attempt in ``history`` at all, every task gets ``default_s``
  (``source="default"``).

Peak memory comes from a :class:`~planner.learning.memory.PeakMemoryRegressor` fitted on
``history`` at load (None when no attempt reported it); the CPU share of each task (cores
it keeps busy) from :func:`~planner.learning.cpu.cpu_share_by_step` on ``history``,
computed at the first prediction (None for a step with no measured attempt). The history
features of planned tasks are looked up in a per-group snapshot taken at load, for the
distinct tasks only (:func:`~planner.learning.queries.query_table`). Measured by
``benchmarks/bench_learning.py latency`` (10,000 tasks): ~20 ms with the baselines, ~75 ms
with the default model on a quiet machine, of which ~55 ms are the 150 boosted trees
(``max_iter`` + ``quantile_max_iter`` of the model trade accuracy for speed).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from planner.errors import ModelError
from planner.gcpause import paused_gc
from planner.learning.conformal import AdaptiveConformal
from planner.learning.cpu import cpu_share_by_step
from planner.learning.evaluation import online_bounds
from planner.learning.features import (
    attempt_features,
    finished_attempts,
    to_seconds,
)
from planner.learning.growth import (
    GROUP_WEIGHT,
    GrowthFit,
    fit_growth,
    group_lines,
    param_factor,
    sizes_of,
)
from planner.learning.memory import PeakMemoryRegressor
from planner.learning.models import DurationModel, ModelBundle
from planner.learning.queries import (
    HistorySnapshot,
    QueryTable,
    epoch_seconds,
    query_table,
    snapshot,
)
from planner.learning.registry import ModelLedger, Registry, bound_warning
from planner.planning.model import TaskEstimate, TaskQuery

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Predictor"]

_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


class Predictor:
    """Estimates for planned tasks; build it with :meth:`load`."""

    #: ``{step: cores one task keeps busy}`` of ``history``, computed at the first
    #: prediction (see :meth:`_cpu`).
    _cpu_by_step: dict[str, float] | None = None

    def __init__(
        self,
        *,
        pipeline: str,
        history: pd.DataFrame,
        model: DurationModel | None,
        model_id: str | None,
        mode: str,
        quantile: float,
        default_s: float,
        warnings: list[str],
        memory: PeakMemoryRegressor | None,
        threads: int | None = None,
        growth: GrowthFit | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.history = history
        self.model = model
        self.model_id = model_id
        self.mode = mode  # "model" | "baselines" | "default"
        self.quantile = quantile
        self.default_s = default_s
        self.warnings = warnings
        self.memory = memory
        #: how durations grow with size, fitted on ``history`` (see planner.learning.growth)
        self.growth = growth if growth is not None else fit_growth(history)
        #: one line per step whose planned size is beyond any seen, from the last predict
        self.extrapolations: list[str] = []
        # OpenMP threads of the boosted trees while predicting (the model's own setting,
        # applied here through one controller: discovering the libraries costs ms per call)
        self.threads = threads
        self._controller: Any = None
        # the per-group history aggregates, once: valid for any ``now`` after the history
        self._snapshot = snapshot(history, _FAR_FUTURE, self.growth) if model is not None else None

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        models_dir: Path,
        pipeline: str,
        history: pd.DataFrame,
        *,
        ledger: ModelLedger | None,
        quantile: float = 0.95,
        default_s: float = 60.0,
        size_params: Mapping[str, Sequence[str]] | None = None,
    ) -> Predictor:
        """The predictor of ``pipeline``: its current model, else baselines, else a default.

        ``ledger`` (the history store) holds the digests of the models trained here: a
        model whose file's digest is not recorded there (or differs), or any model when
        ``ledger`` is None, is refused before unpickling and the baselines predict, with
        a one-line warning saying why."""
        warnings: list[str] = []
        done = finished_attempts(history)
        growth = fit_growth(history, size_params)
        registry = Registry(Path(models_dir), ledger=ledger)
        bundle: ModelBundle | None = None
        model_id: str | None = None
        try:
            model_id = registry.current_id(pipeline)
            if model_id is None:
                if not done.empty:  # without any history, the line below says it all
                    warnings.append(
                        f"no trained model for pipeline {pipeline!r} in {models_dir}; "
                        "using baselines (train with planner train)"
                    )
            else:
                loaded = registry.load(pipeline, model_id)
                if isinstance(loaded.obj, ModelBundle):
                    bundle = loaded.obj
                    flagged = bound_warning(loaded.card)
                    if flagged is not None:  # its bound missed its target on the holdout
                        warnings.append(flagged)
                else:
                    warnings.append(f"model {model_id}: not a duration model; using baselines")
        except ModelError as exc:
            label = f"model {model_id}" if model_id else "model"
            warnings.append(f"{label}: {exc}; using baselines")
        memory = _fit_memory(done)
        threads: int | None = None
        model: DurationModel | None
        if bundle is not None:
            model = _refresh(bundle, history, done, quantile, growth)
            threads, model.threads = model.threads, None
            mode = "model"
        elif done.empty:
            warnings.append(
                f"no history for pipeline {pipeline!r} yet: every task is planned at the "
                f"default {default_s:g} s until its first run is recorded"
            )
            model, model_id, mode = None, None, "default"
        else:
            data = done.sort_values("started_at", kind="stable")
            features = attempt_features(history, growth).loc[data.index]
            # baselines only: no boosting, hence no thread limit to set on every call
            model = DurationModel(quantile=quantile, use_hgb=False, threads=None).fit(
                features, data["duration_s"].to_numpy(dtype="float64")
            )
            model_id, mode = None, "baselines"
        return cls(
            pipeline=pipeline,
            history=history,
            model=model,
            model_id=model_id,
            mode=mode,
            quantile=quantile,
            default_s=default_s,
            warnings=warnings,
            memory=memory,
            threads=threads,
            growth=growth,
        )

    # -- predicting ----------------------------------------------------------------------

    def _snap(self, now: datetime) -> HistorySnapshot:
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = snapshot(self.history, _FAR_FUTURE, self.growth)
        if epoch_seconds(now) > snap.last_finish:
            return snap
        return snapshot(self.history, now, self.growth)

    def predict(self, tasks: Sequence[TaskQuery], now: datetime) -> list[TaskEstimate]:
        """Point prediction, upper bound (never below it) and source of every task."""
        if not tasks:
            return []
        # Creating ~10 objects per task would trigger full garbage collections that walk
        # the whole history frame (its params dicts): they cost more than the prediction.
        with paused_gc():
            return self._predict(tasks, now)

    def _predict(self, tasks: Sequence[TaskQuery], now: datetime) -> list[TaskEstimate]:
        if self.model is None:
            d = float(self.default_s)
            steps = [t.step for t in tasks]
            memory = self._memory(steps, [t.account for t in tasks])
            cpu = self._cpu(steps)
            return [TaskEstimate(d, d, "default", m, c) for m, c in zip(memory, cpu, strict=True)]
        # features, predictions and estimates of the distinct tasks only (identical tasks
        # share one frozen estimate)
        table = query_table(self._snap(now), tasks, now)
        X = table.frame
        self.extrapolations = self._extrapolations(table)
        model = self.model
        with self._thread_limit():
            point_log, center = model.predict_both(X)
        point = np.exp(point_log)
        bound = model.conformal_.bounds(center, point)
        if self.extrapolations:
            point, bound = self._own_lines(table, point, bound)
        if model.source() == "model":
            sources = ["model"] * len(X)
        else:
            base = model.baseline()
            sources = base.sources(base.predict_with_level(X)[1])
        memory = self._memory(table.steps, table.accounts)
        cpu = self._cpu(table.steps)
        distinct = _estimates(point.tolist(), bound.tolist(), sources, memory, cpu)
        if len(distinct) == len(tasks):  # rows are 0..n-1 in order: no task repeats
            return distinct
        return list(map(distinct.__getitem__, table.rows.tolist()))

    def _own_lines(
        self, table: QueryTable, point: np.ndarray, bound: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beyond the sizes seen, blend each account's own line into its step's: the point
        moves towards it by ``attempts / (attempts + GROUP_WEIGHT)`` (geometric), and the
        bound covers the own line's answer at the same bound/point ratio."""
        X = table.frame
        beyond = np.flatnonzero(
            X["work"].to_numpy(dtype="float64") > X["h.s.workmax"].to_numpy(dtype="float64")
        )
        if not len(beyond):
            return point, bound
        steps = sorted({table.steps[i] for i in beyond.tolist()})
        lines = group_lines(self.history, steps, self.growth.size_params)
        if not lines:
            return point, bound
        per_account = np.fromiter(
            (a is not None and a != "" for a in table.accounts), bool, count=len(X)
        )
        sizes = sizes_of(
            X["quantity"].to_numpy(dtype="float64"),
            X["n_accounts"].to_numpy(dtype="float64"),
            per_account,
            param_factor(table.steps, table.params, self.growth.size_params),
        )
        point, bound = point.copy(), bound.copy()
        for i in beyond.tolist():
            line = lines.get((table.steps[i], str(table.accounts[i])))
            if line is None or point[i] <= 0:
                continue
            fixed, rate, attempts = line
            own = fixed + rate * sizes[i]
            w = attempts / (attempts + GROUP_WEIGHT)
            blended = math.exp((1 - w) * math.log(point[i]) + w * math.log(own))
            spread = bound[i] / point[i]
            bound[i] = max(bound[i] * blended / point[i], own * spread)
            point[i] = blended
        return point, bound

    def _extrapolations(self, table: QueryTable) -> list[str]:
        """One line per step whose planned size is beyond the largest its history saw."""
        frame = table.frame
        per_account = np.fromiter(
            (a is not None and a != "" for a in table.accounts), bool, count=len(frame)
        )
        growth = self.growth
        sizes = sizes_of(
            frame["quantity"].to_numpy(dtype="float64"),
            frame["n_accounts"].to_numpy(dtype="float64"),
            per_account,
            param_factor(table.steps, table.params, growth.size_params),
        )
        largest: dict[str, tuple[float, bool]] = {}
        for step, size, own in zip(table.steps, sizes.tolist(), per_account.tolist(), strict=True):
            if size > largest.get(step, (0.0, own))[0]:
                largest[step] = (size, own)
        lines = []
        for step, (size, own) in largest.items():
            line = growth.steps.get(step)
            if line is None or size <= line.largest * 1.001:
                continue
            drivers = growth.drivers(step, own)
            what = drivers if drivers == "quantity" else f"size ({drivers})"
            lines.append(
                f"step {step}: {what} {size:g} is {size / line.largest:.1f}x the largest seen "
                f"({line.largest:g}): predicted by {growth.describe(step)}"
            )
        return lines

    def _thread_limit(self) -> AbstractContextManager[object]:
        if self.threads is None:
            return contextlib.nullcontext()
        if self._controller is None:  # the model is loaded: its OpenMP runtime is known
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        return self._controller.limit(limits=self.threads)  # type: ignore[no-any-return]

    def _memory(self, steps: list[str], accounts: list[str | None]) -> list[float | None]:
        if self.memory is None:
            return [None] * len(steps)
        return self.memory.predict_keys(steps, accounts)

    def _cpu(self, steps: list[str]) -> list[float | None]:
        """The CPU share of each task's step (``None``: never measured)."""
        by_step = self._cpu_by_step
        if by_step is None:
            by_step = self._cpu_by_step = cpu_share_by_step(self.history)
        return list(map(by_step.get, steps))


_NEW = object.__new__
#: Frozen dataclasses are built through ``object.__setattr__`` per field, three times
#: slower than filling the instance dictionary; the shortcut is taken only for a plain
#: dataclass (no ``__slots__``, no ``__post_init__``), as ``TaskEstimate`` is.
_FAST_ESTIMATES = (
    not hasattr(TaskEstimate, "__slots__")
    and not hasattr(TaskEstimate, "__post_init__")
    and [f.name for f in dataclasses.fields(TaskEstimate)]
    == ["predicted_s", "bound_s", "source", "peak_rss_mb", "cpu_share"]
)


def _estimates(
    points: list[float],
    bounds: list[float],
    sources: list[str],
    memory: list[float | None],
    cpu: list[float | None] | None = None,
) -> list[TaskEstimate]:
    """``TaskEstimate(p, b, s, m, c)`` for each position of the lists (``cpu`` None: no
    task's CPU share is known)."""
    shares = [None] * len(points) if cpu is None else cpu
    rows = zip(points, bounds, sources, memory, shares, strict=True)
    if not _FAST_ESTIMATES:
        return [TaskEstimate(p, b, s, m, c) for p, b, s, m, c in rows]
    out: list[TaskEstimate] = []
    append = out.append
    for p, b, s, m, c in rows:
        estimate = _NEW(TaskEstimate)
        fields = estimate.__dict__
        fields["predicted_s"] = p
        fields["bound_s"] = b
        fields["source"] = s
        fields["peak_rss_mb"] = m
        fields["cpu_share"] = c
        append(estimate)
    return out


def _fit_memory(done: pd.DataFrame) -> PeakMemoryRegressor | None:
    if "peak_rss_mb" not in done or not (done["peak_rss_mb"] > 0).any():
        return None
    ordered = done.sort_values("started_at", kind="stable")
    return PeakMemoryRegressor().fit(ordered, ordered["peak_rss_mb"].to_numpy(dtype="float64"))


def _refresh(
    bundle: ModelBundle,
    history: pd.DataFrame,
    done: pd.DataFrame,
    quantile: float,
    growth: GrowthFit,
) -> DurationModel:
    """A copy of the bundle's model whose bound saw every attempt finished after training
    (``done``: the finished attempts of ``history``)."""
    model = copy.deepcopy(bundle.model)
    if not math.isclose(bundle.quantile, quantile):
        old = model.conformal_
        model.conformal_ = AdaptiveConformal(
            quantile=quantile, gamma=old.gamma, window=old.window
        ).calibrate(list(old.recent_))
    done = done.sort_values("started_at", kind="stable")
    finished = to_seconds(done["finished_at"])
    newer = finished > bundle.trained_until
    if not newer.any():
        return model
    features = attempt_features(history, growth).loc[done.index[newer]]
    rows = done.loc[newer]
    point_log, center = model.predict_both(features)
    online_bounds(
        model.conformal_,
        center,
        point_s=np.exp(point_log),
        started=to_seconds(rows["started_at"]),
        finished=finished[newer],
        actual=rows["duration_s"].to_numpy(dtype="float64"),
        drain=True,
    )
    return model
