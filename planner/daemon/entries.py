"""What the daemon serves: each pipeline as loaded (and the copy its runs use), and the
daemon's settings."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from planner import defaults

if TYPE_CHECKING:
    from planner.config import Pipeline
    from planner.daemon.children import Child
    from planner.service.scheduling import NextStart

__all__ = ["DaemonSettings", "Entry", "Schedule", "load_entries", "save_copy"]


class Schedule(Protocol):
    """What the core needs from its timer (:class:`~planner.daemon.timer.Timer`)."""

    def schedule(self, name: str, at: datetime) -> None: ...

    def unschedule(self, name: str) -> None: ...

    def scheduled(self, name: str) -> datetime | None: ...


@dataclass(frozen=True)
class DaemonSettings:
    """How the daemon leads, waits and retrains (defaults in :mod:`planner.defaults`)."""

    leader_ttl_s: float = defaults.LEADER_TTL_S
    misfire_grace_s: float = defaults.MISFIRE_GRACE_S
    stop_grace_s: float = defaults.DAEMON_STOP_GRACE_S
    run_stop_grace_s: float = 10.0
    retrain_cron: str | None = defaults.RETRAIN_CRON
    timezone: str = "UTC"
    poll_s: float = 0.2  # how often a waiting worker looks at its child

    @property
    def tick_s(self) -> float:
        """How often leadership is renewed: a third of its lifetime."""
        return max(0.2, self.leader_ttl_s / 3)


@dataclass
class Entry:
    """One pipeline the daemon serves, and what it is doing with it."""

    file: Path
    pipeline: Pipeline
    copy: Path
    loaded_at: datetime
    models_dir: Path
    leader: bool = False
    beat_at: datetime | None = None
    beat_mono: float | None = None  # clock.monotonic() when that heartbeat was sent
    child: Child | None = None
    run_id: str | None = None
    next: NextStart | None = None
    decided_at: datetime | None = None  # when ``next`` was decided
    began_at: datetime | None = None  # when a due start was last handled
    deferred_by: str | None = None
    resume_pending: bool = False  # just led: the next start is still to be decided
    #: held while a start of this pipeline is handled or decided (not by heartbeats)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def folder(self) -> Path:
        return self.pipeline.state_dir / "daemon"


def load_entries(
    files: Sequence[Path], now: datetime, *, db: str | None, models: Path | None
) -> tuple[list[Entry], str]:
    """The pipelines of ``files``, validated, and the URL of the one history they share;
    raises :class:`ConfigError` for the first file that does not validate and
    :class:`UsageError` for a name given twice or pipelines whose histories differ."""
    from planner.config import load_pipeline
    from planner.errors import UsageError
    from planner.service.locations import pipeline_locations

    entries: list[Entry] = []
    seen: dict[str, Path] = {}
    urls: set[str] = set()
    for file in files:
        pipeline = load_pipeline(file)
        if pipeline.name in seen:
            raise UsageError(
                str(file), f"pipeline {pipeline.name!r} is also defined in {seen[pipeline.name]}"
            )
        seen[pipeline.name] = file
        target = pipeline_locations(pipeline, db=db, models=models)
        urls.add(target.db_url)
        entry = Entry(file.resolve(), pipeline, Path(), now, target.models_dir)
        entry.copy = save_copy(entry)
        entries.append(entry)
    if len(urls) != 1:
        raise UsageError(
            "--db", "these pipelines keep their histories in different places: give one --db"
        )
    return entries, urls.pop()


def save_copy(entry: Entry) -> Path:
    """Keep the file as validated: runs use this copy until a reload validates a new one."""
    entry.folder.mkdir(parents=True, exist_ok=True)
    copy = entry.folder / f"{entry.name}.last-valid{entry.file.suffix}"
    # a name of our own: several daemons of one machine may share the state dir
    tmp = copy.with_suffix(f"{copy.suffix}.{os.getpid()}.tmp")
    shutil.copyfile(entry.file, tmp)
    tmp.replace(copy)
    return copy
