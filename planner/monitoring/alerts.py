"""What an alert is: its level, its kind, what it is about, and the figures behind it.

An :class:`Alert` is a frozen value. The watcher decides when one fires; the dispatcher
(:mod:`planner.monitoring.delivery`) stores it and hands it to the sinks, which send
:meth:`Alert.body` (a webhook's JSON, the log line, a command's stdin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from planner.clock import ensure_utc

if TYPE_CHECKING:
    from planner.history import AlertRecord

__all__ = ["BODY_KEYS", "Alert", "AlertKind", "AlertLevel", "level_rank"]


class AlertLevel(StrEnum):
    """How bad an alert is; ordered: info < warning < critical."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {level.value: rank for rank, level in enumerate(AlertLevel)}


def level_rank(level: str) -> int:
    """0 for ``info``, 1 for ``warning``, 2 for ``critical`` (ValueError otherwise)."""
    try:
        return _RANK[str(level)]
    except KeyError:
        known = ", ".join(_RANK)
        raise ValueError(f"unknown alert level {level!r} (known: {known})") from None


class AlertKind(StrEnum):
    """The kinds of alert planner fires (an alert's ``kind`` may also be another text)."""

    RUN_LATE = "run_late"
    TASK_LATE = "task_late"
    TASK_STUCK = "task_stuck"
    RUN_FAILED = "run_failed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    DEFERRED = "deferred"
    REFUSED = "refused"
    RETRAIN_FAILED = "retrain_failed"
    MODEL_DRIFT = "model_drift"
    NO_PREDICTION = "no_prediction"


#: The keys of :meth:`Alert.body`, in order (the webhook's JSON; Slack reads ``text``).
BODY_KEYS = (
    "level",
    "kind",
    "pipeline",
    "run_id",
    "step",
    "account",
    "elapsed_s",
    "predicted_s",
    "bound_s",
    "eta",
    "text",
    "at",
)


@dataclass(frozen=True)
class Alert:
    """One alert. Times are aware UTC (a naive one is taken as UTC); ``text`` is the one
    line a person reads; ``level`` is ``info``, ``warning`` or ``critical``."""

    level: str
    kind: str
    pipeline: str
    run_id: str | None
    step: str | None
    account: str | None
    elapsed_s: float | None
    predicted_s: float | None
    bound_s: float | None
    eta: datetime | None
    text: str
    at: datetime

    def __post_init__(self) -> None:
        level_rank(self.level)  # refuses an unknown level
        # Frozen: normalise through object.__setattr__ (the dataclass's own way).
        object.__setattr__(self, "level", str(self.level))
        object.__setattr__(self, "kind", str(self.kind))
        object.__setattr__(self, "at", ensure_utc(self.at))
        if self.eta is not None:
            object.__setattr__(self, "eta", ensure_utc(self.eta))
        if "\n" in self.text or "\r" in self.text:
            object.__setattr__(self, "text", " ".join(self.text.split()))

    @property
    def rank(self) -> int:
        """The level as a number (:func:`level_rank`)."""
        return level_rank(self.level)

    def body(self) -> dict[str, Any]:
        """The alert as JSON-ready data: :data:`BODY_KEYS`, times as ISO 8601 text."""
        return {
            "level": self.level,
            "kind": self.kind,
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "step": self.step,
            "account": self.account,
            "elapsed_s": self.elapsed_s,
            "predicted_s": self.predicted_s,
            "bound_s": self.bound_s,
            "eta": self.eta.isoformat() if self.eta is not None else None,
            "text": self.text,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_record(cls, record: AlertRecord) -> Alert:
        """The alert a stored row holds (to send it again, or to show it)."""
        return cls(
            level=record.level,
            kind=record.kind,
            pipeline=record.pipeline,
            run_id=record.run_id,
            step=record.step,
            account=record.account,
            elapsed_s=record.elapsed_s,
            predicted_s=record.predicted_s,
            bound_s=record.bound_s,
            eta=record.eta,
            text=record.text,
            at=record.at,
        )
