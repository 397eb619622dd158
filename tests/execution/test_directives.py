"""``Runner.prepare`` and ``Runner.run(prepared, directives=..., on_created=...)``: a run
follows its plan (start order, ``timeout: auto``, concurrency) with real processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from planner.config import Pipeline
from planner.errors import UsageError
from planner.execution import PreparedRun, RunDirectives, Runner, RunRequest, TaskKey
from planner.execution.guards import PipelineLock
from planner.history import HistoryStore

MakePipeline = Callable[..., Pipeline]


def test_priority_starts_the_longest_first(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        accounts=["a", "b", "c", "d"],
        concurrency={"max": 1},
        steps=[{"id": "s", "command": ["true"], "per_account": True},
               {"id": "t", "command": ["true"], "depends_on": ["s"]}],
    )  # fmt: skip
    predicted = {TaskKey("s", "a"): 5.0, TaskKey("s", "b"): 50.0, TaskKey("s", "c"): 20.0}
    result = Runner(p, store).run(directives=RunDirectives(priority=predicted))
    rows = sorted(store.attempts_for_run(result.run_id), key=lambda r: r.started_at)
    assert result.status == "succeeded" and result.concurrency == 1
    # Highest first; a task with no prediction (d) ranks as 0, after every predicted one.
    assert [r.account for r in rows] == ["b", "c", "a", "d", None]
    assert [r.attempt_id for r in rows] == sorted(r.attempt_id for r in rows)


def test_auto_timeout_directive_kills_the_tree_near_its_deadline(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(
        steps=[{"id": "slow", "command": ["sleep", "30"], "timeout": "auto"},
               {"id": "free", "command": ["true"], "timeout": "auto"}],
    )  # fmt: skip
    directives = RunDirectives(timeouts={TaskKey("slow"): 1.0})  # "free" has none: no timeout
    result = Runner(p, store, RunRequest(kill_grace=0.5)).run(directives=directives)
    rows = {r.step: r for r in store.attempts_for_run(result.run_id)}
    slow = rows["slow"]
    assert (slow.status, slow.error_class, slow.exit_code) == ("timed_out", "timeout", 128 + 15)
    assert slow.duration_s is not None and 1.0 <= slow.duration_s < 2.5
    assert rows["free"].status == "succeeded"
    assert result.status == "failed"


def test_a_fixed_timeout_ignores_the_directives(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(steps=[{"id": "s", "command": ["sleep", "0.3"], "timeout": "1h"}])
    result = Runner(p, store).run(directives=RunDirectives(timeouts={TaskKey("s"): 0.05}))
    assert result.status == "succeeded"


def test_concurrency_request_then_directives_then_pipeline(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(concurrency={"max": 3}, steps=[{"id": "s", "command": ["true"]}])
    assert Runner(p, store).run().concurrency == 3
    assert Runner(p, store).run(directives=RunDirectives(concurrency=2)).concurrency == 2
    explicit = Runner(p, store, RunRequest(concurrency=1))
    assert explicit.run(directives=RunDirectives(concurrency=2)).concurrency == 1
    assert sorted(r.concurrency for r in store.list_runs()) == [1, 2, 3]


def test_on_created_runs_once_before_the_first_attempt(
    make_pipeline: MakePipeline, store: HistoryStore
) -> None:
    p = make_pipeline(accounts=["a", "b"],
                      steps=[{"id": "s", "command": ["true"], "per_account": True}])  # fmt: skip
    seen: list[tuple[str, str | None, int]] = []

    def on_created(run_id: str) -> None:
        record = store.get_run(run_id)
        rows = store.attempts_for_run(run_id)
        seen.append((run_id, record.status if record else None, len(rows)))

    result = Runner(p, store).run(on_created=on_created)
    assert seen == [(result.run_id, "running", 0)]
    assert result.status == "succeeded" and result.counts == {"succeeded": 2}


def test_on_created_that_raises_closes_the_run_failed(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    p = make_pipeline(steps=[{"id": "s", "command": ["touch", str(marker)]}])

    def on_created(run_id: str) -> None:
        raise RuntimeError(f"cannot store the plan of {run_id}")

    with pytest.raises(RuntimeError, match="cannot store the plan"):
        Runner(p, store).run(on_created=on_created)
    (run,) = store.list_runs()
    assert run.status == "failed" and run.finished_at is not None
    assert store.run_task_counts(run.run_id) == {}  # no attempt, so no running row
    assert not marker.exists()
    assert store.get_lease("t") is None  # the guards were released: the next run goes
    assert Runner(p, store).run().status == "succeeded"


def test_prepare_resolves_without_taking_or_writing_anything(
    make_pipeline: MakePipeline, store: HistoryStore, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("")
    p = make_pipeline(
        accounts=["a", "b"],
        steps=[{"id": "one", "command": ["true"], "per_account": True},
               {"id": "two", "command": ["test", "!", "-e", str(broken)], "depends_on": ["one"]}],
    )  # fmt: skip
    first = Runner(p, store).run()
    assert first.status == "failed"
    runs_before = store.list_runs()
    runner = Runner(p, store, RunRequest(resume=first.run_id))
    prepared = runner.prepare()
    assert isinstance(prepared, PreparedRun)
    assert [s.id for s in prepared.steps] == ["one", "two"] and prepared.accounts == ("a", "b")
    assert prepared.done == frozenset({TaskKey("one", "a"), TaskKey("one", "b")})
    assert prepared.tasks == (TaskKey("two"),)
    assert prepared.selection == {
        "steps": ["one", "two"],
        "accounts": ["a", "b"],
        "requested": {"steps": None, "accounts": None},  # a resume asks for nothing more
    }
    assert store.list_runs() == runs_before and store.get_lease("t") is None
    lock = PipelineLock(p.state_dir, "t")
    assert lock.acquire("test")  # prepare did not take the file lock either
    lock.release()
    broken.unlink()
    second = runner.run(prepared)
    assert second.status == "succeeded"
    assert [(r.step, r.account) for r in store.attempts_for_run(second.run_id)] == [("two", None)]

    with pytest.raises(UsageError, match="unknown accounts"):
        Runner(p, store, RunRequest(accounts=["zz"])).prepare()
    with pytest.raises(UsageError, match="no run"):
        Runner(p, store, RunRequest(resume="nope")).prepare()
