"""Fan-out per account, dependencies per account, skips, and what a resume re-runs."""

from __future__ import annotations

from collections.abc import Callable

from planner.config import Pipeline
from planner.execution import TaskGraph, TaskKey, TaskState


def _pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline(
        accounts=["a", "b"],
        steps=[
            {"id": "catalog", "command": ["true"]},
            {"id": "collect", "command": ["true"], "per_account": True, "depends_on": ["catalog"]},
            {"id": "clean", "command": ["true"], "per_account": True, "depends_on": ["collect"]},
            {"id": "merge", "command": ["true"], "depends_on": ["clean"]},
        ],
    )


def drain(graph: TaskGraph) -> list[TaskKey]:
    out = []
    while (key := graph.pop_ready()) is not None:
        graph.start(key)
        out.append(key)
    return out


def test_fan_out_and_per_account_dependencies(make_pipeline: Callable[..., Pipeline]) -> None:
    p = _pipeline(make_pipeline)
    graph = TaskGraph(list(p.steps), ["a", "b"])
    assert len(graph) == 1 + 2 + 2 + 1
    assert drain(graph) == [TaskKey("catalog")]
    graph.succeed(TaskKey("catalog"))
    assert drain(graph) == [TaskKey("collect", "a"), TaskKey("collect", "b")]
    graph.succeed(TaskKey("collect", "b"))
    assert drain(graph) == [TaskKey("clean", "b")]  # b goes on without waiting for a
    graph.succeed(TaskKey("clean", "b"))
    assert drain(graph) == []  # merge waits for every account
    graph.succeed(TaskKey("collect", "a"))
    graph.succeed(drain(graph)[0])
    assert drain(graph) == [TaskKey("merge")]


def test_a_failure_skips_only_that_accounts_dependents(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    p = _pipeline(make_pipeline)
    graph = TaskGraph(list(p.steps), ["a", "b"])
    graph.succeed(drain(graph)[0])
    drain(graph)
    skipped = graph.fail(TaskKey("collect", "a"))
    assert [k for k, _ in skipped] == [TaskKey("clean", "a"), TaskKey("merge")]
    assert all("collect[a] failed" in why for _, why in skipped)
    graph.succeed(TaskKey("collect", "b"))
    assert drain(graph) == [TaskKey("clean", "b")]
    graph.succeed(TaskKey("clean", "b"))
    assert drain(graph) == []
    assert graph.counts_by_step() == {
        "catalog": {"succeeded": 1}, "collect": {"failed": 1, "succeeded": 1},
        "clean": {"skipped": 1, "succeeded": 1}, "merge": {"skipped": 1},
    }  # fmt: skip


def test_done_tasks_are_not_run_again(make_pipeline: Callable[..., Pipeline]) -> None:
    p = _pipeline(make_pipeline)
    done = {TaskKey("catalog"), TaskKey("collect", "a"), TaskKey("collect", "b"),
            TaskKey("clean", "b")}  # fmt: skip
    graph = TaskGraph(list(p.steps), ["a", "b"], done)
    assert set(graph.to_run()) == {TaskKey("clean", "a"), TaskKey("merge")}
    assert drain(graph) == [TaskKey("clean", "a")]
    graph.succeed(TaskKey("clean", "a"))
    assert drain(graph) == [TaskKey("merge")]
    assert graph.state(TaskKey("catalog")) is TaskState.SUCCEEDED


def test_priority_starts_the_longest_first(make_pipeline: Callable[..., Pipeline]) -> None:
    p = make_pipeline(
        accounts=["a", "b", "c"],
        steps=[{"id": "s", "command": ["true"], "per_account": True}],
    )
    plain = TaskGraph(list(p.steps), ["a", "b", "c"])
    assert [k.account for k in drain(plain)] == ["a", "b", "c"]
    predicted = {TaskKey("s", "a"): 5.0, TaskKey("s", "b"): 50.0, TaskKey("s", "c"): 20.0}
    ranked = TaskGraph(list(p.steps), ["a", "b", "c"], priority=predicted)
    assert [k.account for k in drain(ranked)] == ["b", "c", "a"]
