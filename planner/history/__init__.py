"""The history store: runs, task attempts, leases, plans, alerts, the scheduler's leaders
and decisions, and the attempts DataFrame.

See docs/ARCHITECTURE.md ("History store"). SQLAlchemy 2 Core; SQLite (WAL) by default,
any SQLAlchemy URL (PostgreSQL to share) through ``--db`` / ``$PLANNER_DB``.
"""

from planner.history.frames import FRAME_COLUMNS, FRAME_DTYPES, empty_attempts_frame
from planner.history.leases import HolderAlive, holder_process_alive
from planner.history.location import history_url
from planner.history.records import (
    STDERR_TAIL_BYTES,
    AlertRecord,
    AttemptOutcome,
    AttemptRecord,
    AttemptStart,
    AttemptStatus,
    DecisionRecord,
    DeliveryRecord,
    DeliveryStatus,
    ImportResult,
    LeaseHolder,
    LeaseOwner,
    LeaseResult,
    PlanRecord,
    RunRecord,
    RunStatus,
    TakeoverReason,
)
from planner.history.schema import SCHEMA_VERSION
from planner.history.store import HistoryStore

__all__ = [
    "FRAME_COLUMNS",
    "FRAME_DTYPES",
    "SCHEMA_VERSION",
    "STDERR_TAIL_BYTES",
    "AlertRecord",
    "AttemptOutcome",
    "AttemptRecord",
    "AttemptStart",
    "AttemptStatus",
    "DecisionRecord",
    "DeliveryRecord",
    "DeliveryStatus",
    "HistoryStore",
    "HolderAlive",
    "ImportResult",
    "LeaseHolder",
    "LeaseOwner",
    "LeaseResult",
    "PlanRecord",
    "RunRecord",
    "RunStatus",
    "TakeoverReason",
    "empty_attempts_frame",
    "history_url",
    "holder_process_alive",
]
