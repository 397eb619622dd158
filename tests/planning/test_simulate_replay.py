"""``planner simulate`` replays what ran whole: full runs by run; by step or account, the
occurrences that ran whole. Histories written through the real store, as the runner
writes them (a selection per run, resumed runs, cancelled / interrupted / skipped rows)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from planner.cli import main
from planner.history import AttemptOutcome, AttemptStart, HistoryStore
from planner.planning.replay import RunKind, replay_series
from planner.planning.simulate import series_from_frame, simulate

from .conftest import AGGREGATE_S, DURATIONS, T0

ACCOUNTS = ("a1", "a2", "a3", "a4")
FULL = {"steps": ["1", "2"], "accounts": list(ACCOUNTS)}


def _attempt(
    store: HistoryStore,
    run_id: str,
    task: tuple[str, str | None],
    at: datetime,
    seconds: float | None,
    *,
    status: str = "succeeded",
) -> datetime:
    """One attempt from ``at`` lasting ``seconds`` (``None``: still running); its end."""
    step, account = task
    attempt = store.start_attempt(
        AttemptStart(
            run_id=run_id,
            pipeline="nightly",
            step=step,
            account=account,
            attempt=1,
            quantity=10.0 if step == "1" else 0.0,
            params={},
            n_accounts=4,
            concurrency=1,
            host="test",
            started_at=at,
        )
    )
    if seconds is None:
        return at
    end = at + timedelta(seconds=seconds)
    store.finish_attempt(
        attempt, AttemptOutcome(status=status, finished_at=end, duration_s=seconds)
    )
    return end


def _run(
    store: HistoryStore,
    day: int,
    kind: str = "full",
    *,
    steps: tuple[str, ...] = ("1", "2"),
    accounts: tuple[str, ...] = ACCOUNTS,
    resumed_from: str | None = None,
) -> str:
    """A run on ``day``, one task after the other: ``full`` (or a subset given by
    ``steps``/``accounts``: the runner stores what it resolved), ``cancelled`` (stopped
    in the second task: killed, the rest recorded cancelled with 0 s), ``abandoned`` (its
    process died in the second task), ``running`` (still in its first task)."""
    run_id = f"run-{day:02d}"
    start = T0 + timedelta(days=day)
    store.create_run(
        run_id=run_id,
        pipeline="nightly",
        started_at=start,
        concurrency=1,
        n_accounts=len(accounts),
        selection={"steps": list(steps), "accounts": list(accounts)},
        resumed_from=resumed_from,
    )
    tasks = [("1", a) for a in accounts if "1" in steps]
    tasks += [("2", None)] if "2" in steps else []
    at = start
    for i, task in enumerate(tasks):
        seconds = DURATIONS.get(task, AGGREGATE_S)  # type: ignore[call-overload]
        if kind == "running":
            _attempt(store, run_id, task, at, None)
            return run_id
        if kind == "abandoned" and i == 1:
            _attempt(store, run_id, task, at, None)
            store.abandon_run(run_id, at + timedelta(seconds=60))
            return run_id
        if kind == "cancelled" and i >= 1:
            at = _attempt(store, run_id, task, at, 60.0 if i == 1 else 0.0, status="cancelled")
            continue
        at = _attempt(store, run_id, task, at, seconds)
    store.finish_run(run_id, "cancelled" if kind == "cancelled" else "succeeded", at)
    return run_id


@pytest.fixture
def mixed(tmp_path: Path) -> str:
    """12 full runs of 1,500 s (collect 1,400 s over 4 accounts, then aggregate 100 s),
    and among them 3 partial runs, 1 resume, 2 cancelled, 1 abandoned, 1 still running."""
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with HistoryStore(url) as store:
        for day in range(6):
            _run(store, day)
        _run(store, 6, steps=("2",))  # --steps 2: 100 s
        _run(store, 7)
        _run(store, 8, steps=("1", "2"), accounts=("a4",))  # --accounts a4: 300 s
        _run(store, 9, "cancelled")
        resumed = _run(store, 10, "cancelled")
        _run(store, 11, steps=("2",), resumed_from=resumed)  # --resume: only step 2 left
        _run(store, 12, steps=("1",), accounts=("a1",))  # --steps 1 --accounts a1: 600 s
        _run(store, 13, "abandoned")
        for day in range(14, 19):
            _run(store, day)
        _run(store, 19, "running")
    return url


def test_a_fixed_policy_overrunning_every_full_run_reads_100_percent(
    mixed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "--pipeline", "nightly", "--db", mixed, "--cadence", "20m"]
    assert main([*args, "--refits", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["replayed"] == {
        "by": "run",
        "unit": "runs",
        "count": 12,
        "left_out": {"partial": 3, "resumed": 1, "cancelled": 2, "abandoned": 1, "running": 1},
    }
    fixed = doc["policies"]["fixed"]
    assert fixed["runs"] == 12 - 4  # ceil(12 x 0.3) = 4 full runs train
    assert fixed["overrun_rate"] == 1.0  # every full run (1,500 s) overruns 20 min
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "replayed 12 full runs; left out 3 partial, 1 resumed, 2 cancelled, 1 abandoned, " in out
    assert "1 running" in out


def test_replaying_every_run_distorts_the_fixed_policy(mixed: str) -> None:
    """What the replay was before: partial and cancelled runs counted as runs."""
    from planner.service.simulation import load_series

    with HistoryStore(mixed) as store:
        (raw,) = series_from_frame(store.attempts_frame(pipeline="nightly"), "run")
        (whole,), replay = load_series(store, "nightly", "run")
    # the running run has no finished attempt: it was never an occurrence
    assert len(raw.durations) == 19 and len(whole.durations) == replay.replayed == 12
    rates = [
        simulate([s], 1200.0, policies=["fixed"]).policies["fixed"].overrun_rate
        for s in (raw, whole)
    ]
    assert rates == [pytest.approx(12 / 19), 1.0]


def test_by_step_leaves_out_occurrences_that_did_not_run_whole(
    mixed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["simulate", "--pipeline", "nightly", "--db", mixed, "--cadence", "0", "--json"]
    assert main([*base, "--by", "step", "--refits", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # step 1: 12 full runs; step 2: those and the --steps 2 run (all accounts): 25
    # left out: --accounts a4 (steps 1, 2), --steps 1 --accounts a1 (step 1): partial;
    # the resume's step 2; each cancelled run's two steps; the abandoned and running
    # runs' step 1 (their step 2 never started: no row)
    assert doc["replayed"] == {
        "by": "step",
        "unit": "occurrences",
        "count": 25,
        "left_out": {"partial": 3, "resumed": 1, "cancelled": 4, "abandoned": 1, "running": 1},
    }
    assert main([*base, "--by", "step,account", "--refits", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)["replayed"]
    # a task is whole in a partial run or a resume: left out are the cancelled ones (4 in
    # each of 2 runs), and every task of a run that died or still runs (a1 and a2 of the
    # abandoned run: what never started left no row, so nothing there can be trusted)
    assert doc["left_out"] == {
        "partial": 0,
        "resumed": 0,
        "cancelled": 8,
        "abandoned": 2,
        "running": 1,
    }
    # 5 tasks of each full run, then those of the partial runs (1 + 2 + 1), the resume
    # (1) and the first task of each cancelled run (2)
    assert doc["count"] == 12 * 5 + 4 + 1 + 2


def test_by_account_leaves_out_runs_with_a_subset_of_steps(mixed: str) -> None:
    with HistoryStore(mixed) as store:
        frame = store.attempts_frame(pipeline="nightly")
    from planner.service.views import run_kinds

    with HistoryStore(mixed) as store:
        kinds = run_kinds(store.list_runs("nightly"))
    assert kinds["run-06"].steps == ("2",) and kinds["run-06"].accounts is None
    assert kinds["run-08"].accounts == ("a4",) and kinds["run-08"].steps is None
    assert kinds["run-11"].kind == "resumed" and kinds["run-11"].steps == ("2",)
    assert kinds["run-12"].steps == ("1",) and kinds["run-12"].accounts == ("a1",)
    assert {kinds[f"run-{d:02d}"].kind for d in (0, 7, 14, 18)} == {"full"}
    series, replay = replay_series(frame, "account", kinds)
    by_name = {s.name: s for s in series}
    # the --accounts a4 run ran every step for a4: kept; --steps 2 / --steps 1 were not
    assert len(by_name["a4"].durations) == 12 + 1
    np.testing.assert_allclose(by_name["a4"].durations[:6], 200.0)
    assert replay.left_out["partial"] == 2  # run-06 (-: step 2 only) and run-12 (a1)


def test_imported_histories_are_replayed_as_they_are(tmp_path: Path) -> None:
    """Rows of no known run (imports) keep every status: their source decides."""
    url = f"sqlite:///{tmp_path / 'imported.db'}"
    rows = [
        {
            "source_key": str(i),
            "pipeline": "jobs",
            "run_id": f"b{i}",
            "step": "build",
            "started_at": T0 + timedelta(hours=i),
            "duration_s": 100.0 + i,
            "status": "cancelled" if i % 4 == 0 else "succeeded",
        }
        for i in range(12)
    ]
    with HistoryStore(url) as store:
        store.import_attempts(rows, source="csv:jobs.csv")
        frame = store.attempts_frame(pipeline="jobs")
        kinds = {r.run_id: RunKind(r.status) for r in store.list_runs("jobs")}
    assert kinds == {}
    for by in ("run", "step"):
        series, replay = replay_series(frame, by, kinds)
        assert replay.replayed == 12 and sum(replay.left_out.values()) == 0
        assert [len(s.durations) for s in series] == [12]
