"""Which host this process is, as the history records it.

Leases, leaders, runs and attempts record a host id; two records with the same host id are
taken to come from one machine, whose processes this one can see (a lease whose holder's
pid is gone from *this* host is free at once; on another host only its expiry frees it).

``$PLANNER_HOST_ID`` overrides the default, ``socket.gethostname()``. Set it when two
machines share a host name (containers often do), or to make separate processes on one
machine act as distinct hosts (the multi-host tests do): a process then never judges
another host id's holders by its own process table.
"""

from __future__ import annotations

import os
import socket

__all__ = ["HOST_ID_ENV", "host_id"]

#: The environment variable that names this host in the history.
HOST_ID_ENV = "PLANNER_HOST_ID"


def host_id() -> str:
    """``$PLANNER_HOST_ID`` when set (stripped, non-empty), else the host name."""
    value = os.environ.get(HOST_ID_ENV, "").strip()
    return value or socket.gethostname()
