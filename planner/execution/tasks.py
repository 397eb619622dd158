"""Steps fanned out into tasks, and which task may start when.

A per-account step becomes one task per account, other steps one task. Dependencies are
tracked per account: ``B[acct]`` waits for ``A[acct]`` when both are per account, for
``A`` when only ``B`` is, and a step that is not per account waits for every account's
task of a per-account step. When a task fails for good, every task that depends on it
(directly or not) is skipped with a reason; other accounts go on. Tasks already done (in
the run a resume continues) count as succeeded and are not run again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from planner.config.models import Step

__all__ = ["TaskGraph", "TaskKey", "TaskState"]


@dataclass(frozen=True, order=True)
class TaskKey:
    """A task: a step, and the account for a per-account step."""

    step: str
    account: str | None = None

    @property
    def label(self) -> str:
        return f"{self.step}[{self.account}]" if self.account is not None else self.step


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


@dataclass
class _Node:
    key: TaskKey
    step: Step
    order: int
    deps: set[TaskKey]
    dependents: set[TaskKey] = field(default_factory=set)
    state: TaskState = TaskState.PENDING
    attempts: int = 0


class TaskGraph:
    """The tasks of one run and their states.

    ``steps`` are the selected steps in dependency order; a dependency on a step that is
    not selected is taken as satisfied (the selection rules already checked it). Among
    ready tasks, a higher ``priority`` (for example a predicted duration, to start the
    longest first) goes first, then step and account order.
    """

    def __init__(
        self,
        steps: Sequence[Step],
        accounts: Sequence[str],
        done: Iterable[TaskKey] = (),
        priority: Mapping[TaskKey, float] | None = None,
    ) -> None:
        self.steps = list(steps)
        self.accounts = list(accounts)
        by_id = {s.id: s for s in self.steps}
        self._nodes: dict[TaskKey, _Node] = {}
        done_set = set(done)
        order = 0
        for step in self.steps:
            for key in self._keys(step):
                deps: set[TaskKey] = set()
                for dep_id in step.depends_on:
                    dep_step = by_id.get(dep_id)
                    if dep_step is None:
                        continue
                    if dep_step.per_account and key.account is not None:
                        deps.add(TaskKey(dep_step.id, key.account))
                    else:
                        deps.update(self._keys(dep_step))
                self._nodes[key] = _Node(key, step, order, deps)
                order += 1
        for node in self._nodes.values():
            for dep in node.deps:
                self._nodes[dep].dependents.add(node.key)
        self._priority = dict(priority or {})
        self.done_before = {k for k in done_set if k in self._nodes}
        for done_key in self.done_before:
            self._nodes[done_key].state = TaskState.SUCCEEDED
        self._ready: list[tuple[float, int, TaskKey]] = []
        for node in self._nodes.values():
            self._push_if_ready(node)

    def _push_if_ready(self, node: _Node) -> None:
        nodes = self._nodes
        if node.state is TaskState.PENDING and all(
            nodes[d].state is TaskState.SUCCEEDED for d in node.deps
        ):
            rank = -self._priority.get(node.key, 0.0)
            heapq.heappush(self._ready, (rank, node.order, node.key))

    def _keys(self, step: Step) -> list[TaskKey]:
        if step.per_account:
            return [TaskKey(step.id, a) for a in self.accounts]
        return [TaskKey(step.id)]

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def step_of(self, key: TaskKey) -> Step:
        return self._nodes[key].step

    def attempts(self, key: TaskKey) -> int:
        """Attempts started for ``key`` in this run."""
        return self._nodes[key].attempts

    def state(self, key: TaskKey) -> TaskState:
        return self._nodes[key].state

    def to_run(self) -> list[TaskKey]:
        """Tasks of this run that were not done before it."""
        return [k for k in self._nodes if k not in self.done_before]

    def has_ready(self) -> bool:
        self._drop_stale()
        return bool(self._ready)

    def ready_count(self) -> int:
        """How many pending tasks have every dependency done (a full scan: for messages)."""
        return sum(1 for *_, key in self._ready if self._nodes[key].state is TaskState.PENDING)

    def pop_ready(self) -> TaskKey | None:
        """The next pending task whose dependencies all succeeded (by priority, then order)."""
        self._drop_stale()
        return heapq.heappop(self._ready)[2] if self._ready else None

    def _drop_stale(self) -> None:
        while self._ready and self._nodes[self._ready[0][2]].state is not TaskState.PENDING:
            heapq.heappop(self._ready)

    def counts_by_step(self) -> dict[str, dict[str, int]]:
        """``{step id: {state: count}}`` over the tasks of this run (not those done before)."""
        out: dict[str, dict[str, int]] = {s.id: {} for s in self.steps}
        for key in self.to_run():
            state = self._nodes[key].state.value
            out[key.step][state] = out[key.step].get(state, 0) + 1
        return out

    # -- changing ------------------------------------------------------------------------

    def start(self, key: TaskKey) -> int:
        """Mark ``key`` running; returns its attempt number (1 for the first)."""
        node = self._nodes[key]
        node.state = TaskState.RUNNING
        node.attempts += 1
        return node.attempts

    def retry_later(self, key: TaskKey) -> None:
        """The task failed and will be retried: it waits (not ready) until restarted."""
        self._nodes[key].state = TaskState.RUNNING

    def succeed(self, key: TaskKey) -> None:
        node = self._nodes[key]
        node.state = TaskState.SUCCEEDED
        for dep in node.dependents:
            self._push_if_ready(self._nodes[dep])

    def fail(self, key: TaskKey) -> list[tuple[TaskKey, str]]:
        """Mark ``key`` failed for good; returns the tasks now skipped and why."""
        self._nodes[key].state = TaskState.FAILED
        skipped: list[tuple[TaskKey, str]] = []
        todo = sorted(self._nodes[key].dependents, key=lambda k: self._nodes[k].order)
        seen: set[TaskKey] = set()
        while todo:
            dep = todo.pop(0)
            if dep in seen:
                continue
            seen.add(dep)
            node = self._nodes[dep]
            if node.state is not TaskState.PENDING:
                continue
            node.state = TaskState.SKIPPED
            skipped.append((dep, f"upstream task {key.label} failed"))
            todo.extend(sorted(node.dependents, key=lambda k: self._nodes[k].order))
        return skipped

    def cancel_pending(self) -> list[TaskKey]:
        """Mark every task not started yet cancelled; returns them."""
        out = []
        for node in self._nodes.values():
            if node.state is TaskState.PENDING:
                node.state = TaskState.CANCELLED
                out.append(node.key)
        return out

    def cancel(self, key: TaskKey) -> None:
        self._nodes[key].state = TaskState.CANCELLED
