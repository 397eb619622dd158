"""The dashboard's documents, on a history made by real runs (tests/dashboard_history.py):
the parts that commands print with ``--json`` are those documents unchanged, the rest
agrees with the history it was read from."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from planner.config import load_pipeline
from planner.errors import UsageError
from planner.execution import RunRequest
from planner.monitoring.drift import planned_vs_actual, prediction_quality
from planner.service import Instance
from planner.service.dashboard import (
    QUALITY_RUNS,
    alerts_page,
    live,
    model_quality,
    overview,
    pipeline_detail,
    pipeline_history,
    run_detail,
)
from planner.service.running import prepare_run
from planner.service.status import pipeline_status
from planner.service.views import runs_document, show_document
from tests.dashboard_history import DAEMON, DashboardHistory, sleepy_pipeline


@pytest.fixture
def instance(dashboard_history: DashboardHistory) -> Iterator[Instance]:
    with dashboard_history.instance() as opened:
        yield opened


def _now() -> datetime:
    return datetime.now(UTC)


def test_the_overview_is_planner_status_with_progress_fit_and_alerts(
    dashboard_history: DashboardHistory, instance: Instance
) -> None:
    now = _now()
    document = overview(instance, now)
    assert document["history"] == instance.url and document["now"] == now.isoformat()
    status = pipeline_status(instance.store, None, now)
    assert [p["pipeline"] for p in document["pipelines"]] == ["other", "tiny"]
    for row, expected in zip(document["pipelines"], status, strict=True):
        assert {key: row[key] for key in expected} == expected
        assert set(row) - set(expected) == {"progress", "last_run_fit", "alerts"}
        assert row["progress"] is None  # nothing runs
    other, tiny = document["pipelines"]
    assert (
        other["state"] == "deferred" and other["last_run"]["run_id"] == dashboard_history.other_run
    )
    assert tiny["state"] == "idle" and tiny["last_run"]["run_id"] == dashboard_history.tiny_runs[-1]
    assert tiny["leader"]["owner_id"] == DAEMON.owner_id and tiny["leader"]["alive"]
    assert tiny["next_start"] is not None and tiny["next_reason"].startswith("predicted")
    last = tiny["last_run"]
    fit = (
        "within_prediction"
        if last["duration_s"] <= last["predicted_s"]
        else "within_bound"
        if last["duration_s"] <= last["bound_s"]
        else "over_bound"
    )
    assert tiny["last_run_fit"] == fit
    assert other["last_run"]["predicted_s"] is not None
    assert other["last_run_fit"] is None  # its only run was planned at the default estimate
    # both alerts concern the last run: one failed on the webhook, one still pending
    assert tiny["alerts"] == {
        "open": 2,
        "critical": 1,
        "warning": 1,
        "info": 0,
        "undelivered": 2,
        "since": last["started_at"],
    }
    assert other["alerts"]["open"] == 0


def test_one_pipeline_in_detail_and_an_unknown_one(instance: Instance) -> None:
    now = _now()
    detail = pipeline_detail(instance, "tiny", now, runs=2)
    assert detail["pipeline"] == overview(instance, now, ["tiny"])["pipelines"][0]
    assert detail["runs"] == runs_document(instance.store, "tiny", 2)["runs"]
    with pytest.raises(UsageError, match="no such pipeline"):
        pipeline_detail(instance, "nope", now)


def test_a_run_is_planner_show_plus_its_timeline(
    dashboard_history: DashboardHistory, instance: Instance
) -> None:
    first = dashboard_history.tiny_runs[0]
    document = run_detail(instance, first, _now())
    shown = show_document(instance.store, first)
    assert document["run"] == shown["run"] and document["attempts"] == shown["attempts"]
    rows = document["timeline"]["rows"]
    assert len(rows) == len(shown["attempts"])  # nothing skipped or cancelled
    assert document["timeline"]["slots"] == len({r["slot"] for r in rows}) <= 2
    for slot in {r["slot"] for r in rows}:
        bars = sorted((r["start_s"], r["end_s"]) for r in rows if r["slot"] == slot)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(bars))
    assert max(r["end_s"] for r in rows) <= document["timeline"]["span_s"] + 1e-3
    (failed,) = [r for r in rows if r["status"] != "succeeded"]
    assert (failed["step"], failed["account"], failed["attempt"]) == ("work", "a2", 1)
    assert "boom a2" in failed["stderr_tail"] and failed["exit_code"] == 1
    assert document["retries"] == [
        {"step": "work", "account": "a2", "attempts": 2, "status": "succeeded"}
    ]
    assert document["progress"] is None
    for row in rows:
        late = (
            row["bound_s"] is not None
            and row["estimate"] != "default"
            and row["end_s"] - row["start_s"] > row["bound_s"]
        )
        assert row["late"] is late
    assert document["late"] == sum(r["late"] for r in rows)


def test_the_timeline_carries_the_runs_own_plan(
    dashboard_history: DashboardHistory, instance: Instance
) -> None:
    last = dashboard_history.tiny_runs[-1]
    rows = run_detail(instance, last, _now())["timeline"]["rows"]
    (plan,) = instance.store.plans("tiny", 1, run_id=last)
    planned = {(t["step"], t["account"]): t for t in plan.document["tasks"]}
    for row in rows:
        task = planned[(row["step"], row["account"])]
        assert (row["predicted_s"], row["bound_s"]) == (task["predicted_s"], task["bound_s"])
        assert row["estimate"] == task["source"] != "default"
    with pytest.raises(UsageError, match="no such run"):
        run_detail(instance, "no-such-run", _now())


def test_the_history_of_a_pipeline(dashboard_history: DashboardHistory, instance: Instance) -> None:
    document = pipeline_history(instance, "tiny", _now(), limit=10)
    assert document["runs"] == runs_document(instance.store, "tiny", 10)["runs"]
    kinds = [(e["kind"], e["run_id"], e["other_run_id"]) for e in document["events"]]
    overlapping = dashboard_history.tiny_runs[2]
    assert ("overlap", overlapping, dashboard_history.other_run) in kinds
    assert "refused" in [e["kind"] for e in document["events"]]
    assert "deferred" not in [e["kind"] for e in document["events"]]  # other's, not tiny's
    assert [e["at"] for e in document["events"]] == sorted(e["at"] for e in document["events"])
    steps = {s["step"]: s["points"] for s in document["steps"]}
    assert set(steps) == {"prep", "work", "sum"}
    for step, points in steps.items():
        assert [p["run_id"] for p in points] == list(dashboard_history.tiny_runs)
        for point in points:
            durations = [
                a.duration_s
                for a in instance.store.attempts_for_run(point["run_id"])
                if a.step == step and a.status == "succeeded" and a.duration_s is not None
            ]
            assert point["median_s"] == round(median(durations), 3)
            assert point["n"] == len(durations)
    other = pipeline_history(instance, "other", _now())
    assert [e["kind"] for e in other["events"]].count("deferred") == 1
    (overlap,) = [e for e in other["events"] if e["kind"] == "overlap"]
    assert (overlap["run_id"], overlap["other_run_id"]) == (
        dashboard_history.other_run,
        overlapping,
    )
    assert overlap["overlap_s"] > 0
    assert len(pipeline_history(instance, "tiny", _now(), limit=2)["runs"]) == 2
    with pytest.raises(UsageError):
        pipeline_history(instance, "nope", _now())


def test_model_quality_from_the_runs_own_plans(
    dashboard_history: DashboardHistory, instance: Instance
) -> None:
    document = model_quality(instance, "tiny", _now())
    quality = prediction_quality(planned_vs_actual(instance.store, "tiny", QUALITY_RUNS))
    assert document["summary"]["tasks"] == quality.tasks > 0
    assert document["summary"]["coverage"] == pytest.approx(quality.coverage, abs=1e-4)
    assert document["summary"]["mdape"] == pytest.approx(quality.mdape, abs=1e-4)
    assert document["target"] == 0.95
    points = document["points"]
    assert len(points) == quality.tasks  # fewer than QUALITY_RUNS runs: the same tasks
    assert all(p["within_bound"] == (p["actual_s"] <= p["bound_s"]) for p in points)
    coverage = document["coverage"]
    assert sum(c["tasks"] for c in coverage) == len(points)
    assert coverage[-1]["cumulative"] == pytest.approx(
        sum(p["within_bound"] for p in points) / len(points), abs=1e-4
    )
    assert {s["step"] for s in document["steps"]} == {p["step"] for p in points}
    assert sum(s["tasks"] for s in document["steps"]) == len(points)
    model = document["model"]
    assert model["id"] == dashboard_history.model_id and model["current"]
    assert model["recorded"] and model["trained_at"] == model["created_at"]
    assert model["promoted_at"] is not None
    with pytest.raises(UsageError, match="no runs"):
        model_quality(instance, "nope", _now())
    other = model_quality(instance, "other", _now())  # one run, planned with no history
    assert other["points"] == [] and other["model"] is None and other["summary"]["tasks"] == 0


def test_alerts_newest_first_with_their_deliveries(instance: Instance) -> None:
    document = alerts_page(instance, _now())
    assert document["total"] == 2 and document["counts"] == {
        "critical": 1,
        "warning": 1,
        "info": 0,
    }
    critical, warning = document["alerts"]
    assert (critical["level"], critical["kind"]) == ("critical", "run_late")
    assert [(d["sink"], d["status"]) for d in critical["deliveries"]] == [("log", "pending")]
    assert warning["text"] == "prep a3 running long" and warning["step"] == "prep"
    deliveries = {d["sink"]: d for d in warning["deliveries"]}
    assert deliveries["log"]["status"] == "sent" and deliveries["log"]["sent_at"]
    assert deliveries["webhook"]["status"] == "failed"
    assert deliveries["webhook"]["last_error"] == "connection refused"
    assert alerts_page(instance, _now(), limit=1)["alerts"] == [critical]
    assert alerts_page(instance, _now(), pipeline="other")["alerts"] == []


def test_a_running_run_has_progress_an_eta_and_is_live(tmp_path: Path) -> None:
    pipeline = load_pipeline(sleepy_pipeline(tmp_path, tasks=3, seconds=0.6))
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"

    def run() -> str:
        with Instance.for_pipeline(pipeline, db=url, models=tmp_path / "m") as instance:
            return prepare_run(instance, pipeline, RunRequest()).execute().result.run_id

    first = run()  # a history, so that the second run's plan has predictions
    ids: list[str] = []
    thread = threading.Thread(target=lambda: ids.append(run()))
    thread.start()
    seen: dict[str, Any] | None = None
    try:
        with Instance.for_pipeline(pipeline, db=url, models=tmp_path / "m") as instance:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                now = _now()
                (row,) = overview(instance, now)["pipelines"]
                if row["state"] == "running" and row["progress"]["tasks"]["done"] >= 1:
                    seen = row
                    current = live(instance, now)
                    break
                time.sleep(0.05)
    finally:
        thread.join()
    assert seen is not None, "the run was never seen running"
    progress = seen["progress"]
    assert progress["run_id"] == seen["run_id"] != first
    assert progress["tasks"]["total"] == 3 and progress["eta"] is not None
    assert 0 < progress["percent"] <= 99.9 and progress["remaining_s"] >= 0
    (running,) = current["runs"]  # read a moment later: the same run, its progress
    assert (running["pipeline"], running["state"]) == ("sleepy", "running")
    assert running["run_id"] == seen["run_id"] and running["progress"]["tasks"]["total"] == 3
    with Instance.for_pipeline(pipeline, db=url, models=tmp_path / "m") as instance:
        assert live(instance, _now())["runs"] == []
        detail = run_detail(instance, ids[0], _now())
    assert detail["progress"] is None and len(detail["timeline"]["rows"]) == 3
