"""One line per decision of the daemon: plain text for people, JSON lines for machines.

A plain line reads ``2026-12-03T03:00:00Z nightly: run 2026...-1a2b3c started (pid 4242)``;
with ``--log-json`` the same is ``{"at": ..., "pipeline": "nightly", "event": "started",
"text": ..., "run_id": ..., ...}``: the text, plus every figure it names. Lines go to
stderr (systemd's journal), one write each, so that threads never interleave them.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime
from typing import IO, Any

from planner.clock import ensure_utc

__all__ = ["DecisionLogger"]


class DecisionLogger:
    """Writes the daemon's decisions, one line each."""

    def __init__(self, stream: IO[str] | None = None, *, as_json: bool = False) -> None:
        self._stream = stream
        self._json = as_json
        self._lock = threading.Lock()

    def line(self, at: datetime, pipeline: str | None, event: str, text: str, **fields: Any) -> str:
        """Write one decision; returns the line written (without its newline)."""
        at = ensure_utc(at)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self._json:
            record = {"at": at.isoformat(), "pipeline": pipeline, "event": event, "text": text}
            record.update({k: _plain(v) for k, v in fields.items() if v is not None})
            out = json.dumps(record, separators=(",", ":"))
        else:
            out = f"{stamp} {pipeline}: {text}" if pipeline else f"{stamp} {text}"
            out = " ".join(out.split())  # one line, always
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(out + "\n")
            stream.flush()
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return ensure_utc(value).isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value
