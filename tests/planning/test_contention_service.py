"""A history with runs at concurrency 1, 2, 4 and 8 (written through the real store):
``make_plan`` fits the curve, stretches the what-if, keeps ``auto`` within the knee, and
``planner plan`` prints and ``--json`` carries the same figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.clock import FakeClock
from planner.config import load_pipeline
from planner.history import AttemptOutcome, AttemptStart, HistoryStore
from planner.planning.contention import USL
from planner.service import FixedMachine, Instance, MachineState
from planner.service.planning import PlanRequest, make_plan

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
TRUTH = USL(0.1, 0.01)
ACCOUNTS = [f"a{i}" for i in range(10)]
LEVELS = (1, 2, 4, 8, 1, 2, 4, 8, 8)


def _pipeline_file(tmp_path: Path) -> Path:
    raw = {
        "name": "crawl",
        "accounts": ACCOUNTS,
        "state_dir": str(tmp_path / "state"),
        "schedule": {"cadence": "24h"},
        "concurrency": {"max": "auto"},
        "steps": [
            {"id": "collect", "command": ["true"], "per_account": True},
            {"id": "report", "command": ["true"], "depends_on": ["collect"]},
        ],
    }
    path = tmp_path / "crawl.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _record(url: str) -> None:
    """One run per level (the last two at 8): account ``i`` collects in ``(5 + i) x
    s(level)`` seconds using 0.05 core (it waits on a remote service), then one report."""
    with HistoryStore(url) as store:
        for r, level in enumerate(LEVELS):
            start = T0 + timedelta(hours=r)
            run_id = f"run-{r}"
            store.create_run(run_id=run_id, pipeline="crawl", started_at=start, concurrency=level)
            tasks = [
                ("collect", a, (5.0 + i) * TRUTH.stretch(level)) for i, a in enumerate(ACCOUNTS)
            ]
            tasks.append(("report", None, 3.0))
            for step, account, duration in tasks:
                attempt = store.start_attempt(
                    AttemptStart(
                        run_id=run_id,
                        pipeline="crawl",
                        step=step,
                        account=account,
                        attempt=1,
                        quantity=1.0,
                        params={},
                        n_accounts=len(ACCOUNTS),
                        concurrency=level,
                        host="test",
                        started_at=start,
                    )
                )
                store.finish_attempt(
                    attempt,
                    AttemptOutcome(
                        status="succeeded",
                        finished_at=start + timedelta(seconds=duration),
                        duration_s=duration,
                        peak_rss_mb=40.0,
                        cpu_s=0.05 * duration,
                    ),
                )
            store.finish_run(run_id, "succeeded", start + timedelta(minutes=5))


def test_make_plan_fits_and_uses_the_contention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    _record(url)
    pipeline = load_pipeline(_pipeline_file(tmp_path))
    clock = FakeClock(T0 + timedelta(days=1))
    machine = FixedMachine(MachineState(cpu_count=2, free_memory_mb=8000.0))
    with Instance(HistoryStore(url), tmp_path / "m", clock=clock, machine=machine) as instance:
        plan = make_plan(instance, pipeline)
        fixed = make_plan(instance, pipeline, PlanRequest(concurrency=8))

    collect = plan.contention["collect"]
    assert collect.usl is not None
    assert collect.usl.sigma == pytest.approx(0.1, abs=0.01)
    assert collect.usl.kappa == pytest.approx(0.01, abs=0.001)
    assert collect.levels == (1, 2, 4, 8) and collect.attempts == (20, 20, 20, 30)
    assert collect.reference == 8  # the last two runs ran at 8
    knee = collect.usl.knee()
    assert knee == 7
    # one report per run: too few at each level for a curve, and the plan says so
    assert plan.contention["report"].usl is None
    assert plan.contention_notes == (
        "step report: not enough history at different concurrencies to tell how it scales "
        "(seen at 4 levels: 1 (2 attempts), 2 (2 attempts), 4 (2 attempts), 8 (3 attempts); "
        "fewer than 2 levels with 5 comparable attempts); using the CPU rule",
    )
    # 0.05 core per task fits 10 at once on the spare core: the knee holds auto to 7
    assert plan.concurrency == knee and plan.adaptive_start == knee
    # the what-if at each count: the recorded durations at that count, scheduled
    for w in plan.what_if:
        per_account = [(5.0 + i) * TRUTH.stretch(w.concurrency) for i in range(len(ACCOUNTS))]
        assert w.makespan_s >= max(per_account) + 3.0 - 1e-6
        assert w.makespan_s == pytest.approx(_lpt(per_account, w.concurrency) + 3.0, rel=0.03), w
        # without contention every task keeps its duration at 8 (where it was asked)
        at8 = [(5.0 + i) * TRUTH.stretch(8) for i in range(len(ACCOUNTS))]
        assert w.flat_makespan_s == pytest.approx(_lpt(at8, w.concurrency) + 3.0, rel=0.03)
    # a fixed 8: the tasks are planned as they ran at 8
    longest = max(t.predicted_s for t in fixed.tasks if t.step == "collect")
    assert longest == pytest.approx(14.0 * TRUTH.stretch(8), rel=0.03)


def _lpt(durations: list[float], slots: int) -> float:
    loads = [0.0] * slots
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def test_planner_plan_prints_what_the_json_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    _record(url)
    path = _pipeline_file(tmp_path)
    args = ["plan", str(path), "--db", url, "--models", str(tmp_path / "m")]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    curve = doc["contention"]["collect"]
    assert doc["contention"]["report"] is None
    assert curve["levels"] == [1, 2, 4, 8] and curve["attempts"] == [20, 20, 20, 30]
    assert curve["sigma"] == pytest.approx(0.1, abs=0.01)
    assert curve["knee"] == 7 and curve["peak"] == pytest.approx(9.5, abs=0.3)
    assert doc["contention_warnings"][0].startswith("step report: not enough history")
    assert doc["adaptive"]["start"] == doc["concurrency"]
    assert all(w["without_contention_s"] is not None for w in doc["what_if"])

    assert main(args) == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())  # rich wraps long lines
    assert "step collect gains up to about 7 at once; past that one more task adds under" in text
    assert f"past {curve['peak']:.1f} its tasks only slow down" in text
    assert f"sigma {curve['sigma']:g}, kappa {curve['kappa']:g}, knee 7" in text
    assert "contention: step report: not enough history at different concurrencies" in text
    assert "without contention" in text
