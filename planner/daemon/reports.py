"""How the daemon tells: one log line per decision, the decision stored in the history,
and alerts (deferred, refused, retraining failed) through each pipeline's sinks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from planner.daemon.logs import DecisionLogger

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.monitoring.delivery import AlertDispatcher
    from planner.service.instance import Instance
    from planner.service.scheduling import NextStart

__all__ = ["Reporter", "one_line"]


class Reporter:
    """Says, records and alerts for one daemon (``owner_id``: the daemon's token)."""

    def __init__(self, instance: Instance, logger: DecisionLogger, owner_id: str) -> None:
        self.instance = instance
        self.log = logger
        self.owner_id = owner_id
        self._dispatchers: dict[str, AlertDispatcher] = {}

    def say(self, pipeline: str | None, event: str, text: str, **fields: Any) -> None:
        """One log line."""
        self.log.line(self.instance.clock.now(), pipeline, event, text, **fields)

    def record(
        self,
        pipeline: str,
        kind: str,
        reason: str,
        *,
        run_id: str | None = None,
        nxt: NextStart | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Store a decision; one that cannot be stored is logged, never fatal."""
        from planner.service.scheduling import record

        try:
            record(
                self.instance,
                pipeline,
                kind,
                reason,
                run_id=run_id,
                next_start=nxt.at if nxt else None,
                interval_s=nxt.interval_s if nxt else None,
                detail=(nxt.detail if nxt else None) or detail,
                owner_id=self.owner_id,
            )
        except Exception as exc:
            self.say(pipeline, "error", f"could not store the decision: {one_line(exc)}")

    def alert(self, pipeline: Pipeline, kind: str, text: str, *, run_id: str | None = None) -> None:
        """A warning through the pipeline's sinks (stored at once, delivered in the
        background)."""
        from planner.monitoring.alerts import Alert
        from planner.monitoring.delivery import AlertDispatcher

        dispatcher = self._dispatchers.get(pipeline.name)
        if dispatcher is None:
            dispatcher = AlertDispatcher(pipeline, self.instance.store, clock=self.instance.clock)
            self._dispatchers[pipeline.name] = dispatcher
        alert = Alert(
            level="warning",
            kind=kind,
            pipeline=pipeline.name,
            run_id=run_id,
            step=None,
            account=None,
            elapsed_s=None,
            predicted_s=None,
            bound_s=None,
            eta=None,
            text=f"{pipeline.name}: {text}",
            at=self.instance.clock.now(),
        )
        try:
            dispatcher.post(alert)
        except Exception as exc:
            self.say(pipeline.name, "error", f"could not store the alert: {one_line(exc)}")

    def close(self) -> None:
        """Deliver what the dispatchers hold (within their grace), then stop them."""
        for dispatcher in self._dispatchers.values():
            dispatcher.close()


def one_line(exc: BaseException) -> str:
    """An exception as one short line."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__
