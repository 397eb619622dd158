"""Alerts: what they are (:mod:`.alerts`), where they go (:mod:`.sinks`), and how they are
stored and delivered (:mod:`.delivery`).

Importing this package is cheap: the sinks and the dispatcher (SMTP, HTTP, the history
store) are imported when one of their names is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from planner.monitoring.alerts import BODY_KEYS, Alert, AlertKind, AlertLevel, level_rank

if TYPE_CHECKING:
    from planner.monitoring.delivery import AlertDispatcher, DeliveryReport, backoff_s
    from planner.monitoring.sinks import (
        CommandSink,
        DeliveryError,
        EmailSink,
        LogSink,
        Sink,
        WebhookSink,
        build_sinks,
    )

__all__ = [
    "BODY_KEYS",
    "Alert",
    "AlertDispatcher",
    "AlertKind",
    "AlertLevel",
    "CommandSink",
    "DeliveryError",
    "DeliveryReport",
    "EmailSink",
    "LogSink",
    "Sink",
    "WebhookSink",
    "backoff_s",
    "build_sinks",
    "level_rank",
]

_LAZY = {
    "AlertDispatcher": "delivery",
    "DeliveryReport": "delivery",
    "backoff_s": "delivery",
    "CommandSink": "sinks",
    "DeliveryError": "sinks",
    "EmailSink": "sinks",
    "LogSink": "sinks",
    "Sink": "sinks",
    "WebhookSink": "sinks",
    "build_sinks": "sinks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
