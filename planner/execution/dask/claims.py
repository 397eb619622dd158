"""The scheduler's side of the Dask executor: every planner task runs at most once.

distributed re-runs a task whose worker died on another worker (up to
``distributed.scheduler.allowed-failures`` times, a scheduler-wide setting a client
cannot change per task), and the first run's process may still be going: a duplicate
execution. So each planner task carries a unique token and, before it starts its
command, the worker-side function *claims* the token here (:meth:`ClaimsPlugin.claim`,
a scheduler handler: the scheduler's event loop runs handlers one at a time, so a claim
is atomic). A token is claimed once; a second claim (a silent re-run) and a claim of a
token the client revoked (a kill that came before the start) are refused, and the
worker-side function then returns without starting anything.

When a worker leaves, the tokens it had claimed and not finished are *lost*: the plugin
publishes each on the ``planner-lost`` event topic, so the client records the attempt
``interrupted`` at once (even when no other worker is left to run the refused re-run).

The plugin is registered by the client (idempotent: a second client keeps the first
plugin and its claims), so planner must be installed where the scheduler runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import SchedulerPlugin

if TYPE_CHECKING:
    from distributed import Scheduler

__all__ = ["KEY_PREFIX", "LOST_TOPIC", "PLUGIN_NAME", "ClaimsPlugin", "task_key"]

PLUGIN_NAME = "planner-claims"
LOST_TOPIC = "planner-lost"
KEY_PREFIX = "planner-"


def task_key(token: str) -> str:
    """The Dask key of the task carrying ``token``."""
    return KEY_PREFIX + token


class ClaimsPlugin(SchedulerPlugin):
    """Claims of task tokens by workers, revocations by clients, and lost claims."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}  # token -> the worker that claimed it
        self.revoked: set[str] = set()
        self.scheduler: Scheduler | None = None

    async def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update(
            {
                "planner_claim": self.claim,
                "planner_revoke": self.revoke,
                "planner_forget": self.forget,
            }
        )

    def claim(self, token: str, worker: str) -> bool:
        """Whether ``worker`` may start the task of ``token`` (only the first claim may)."""
        if token in self.claims or token in self.revoked:
            return False
        self.claims[token] = worker
        return True

    def revoke(self, token: str) -> bool:
        """Forbid the start of ``token``'s task; ``False`` when it was already claimed."""
        if token in self.claims:
            return False
        self.revoked.add(token)
        return True

    def forget(self, tokens: list[str]) -> None:
        """The client is done with these tokens (its run ended)."""
        for token in tokens:
            self.claims.pop(token, None)
            self.revoked.discard(token)

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        for token, owner in list(self.claims.items()):
            if owner != worker:
                continue
            state = scheduler.tasks.get(task_key(token))
            if state is None or state.state != "memory":
                scheduler.log_event(LOST_TOPIC, {"token": token, "worker": worker})
