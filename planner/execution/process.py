"""One task as an operating-system process tree: spawn, wait, kill.

Every task runs in its own session (so its own process group); stdout and stderr go to
its log file. A timeout or a stop kills the whole group: ``SIGTERM``, a grace period,
then ``SIGKILL``, so no grandchild survives. Waiting uses a pidfd, so the exit is seen
at once and its time is the process's own; ``os.wait4`` gives the exit status and the
kernel's resource figures (``ru_maxrss``, CPU time of the task and its reaped children).
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from planner.errors import ExecutionError
from planner.history.records import STDERR_TAIL_BYTES

__all__ = [
    "ExitInfo",
    "Launch",
    "LeftTask",
    "TaskProcess",
    "group_alive",
    "group_members",
    "kill_group",
    "log_tail",
    "render_command",
    "spawn",
    "tasks_of_run",
]

_POLL_S = 0.1


@dataclass(frozen=True)
class Launch:
    """What to start: the command (a list, or a string with ``shell``), env, cwd and log."""

    command: tuple[str, ...] | str
    env: Mapping[str, str]
    log_path: Path
    cwd: Path | None = None
    shell: bool = False


@dataclass(frozen=True)
class ExitInfo:
    """How a task process ended.

    ``exit_code`` is the shell's convention: the exit status, or 128 + the signal number
    when a signal ended it. ``timed_out``/``cancelled`` say that planner killed it and why;
    ``lost``: the executor lost the task (a Dask worker died under it, or the scheduler
    connection was lost), so how it ended is unknown (the attempt is ``interrupted``).
    """

    exit_code: int
    ended_mono: float
    maxrss_kb: int
    cpu_s: float
    timed_out: bool = False
    cancelled: bool = False
    lost: bool = False


def render_command(
    command: tuple[str, ...] | str, values: Mapping[str, object], *, shell: bool
) -> tuple[str, ...] | str:
    """The command with ``{placeholders}`` filled in; values are shell-quoted in a string."""
    if isinstance(command, str):
        quoted = {k: shlex.quote(str(v)) for k, v in values.items()} if shell else values
        return command.format_map(quoted)
    return tuple(part.format_map(values) for part in command)


def spawn(launch: Launch, monotonic: Callable[[], float]) -> TaskProcess:
    """Start ``launch`` in a new session; raises :class:`ExecutionError` when it cannot start."""
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(launch.log_path, "wb") as log:
        try:
            popen = subprocess.Popen(
                launch.command if launch.shell else list(launch.command),
                shell=launch.shell,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(launch.env),
                cwd=launch.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"planner: cannot start {launch.command!r}: {exc}\n".encode())
            raise ExecutionError(str(launch.log_path), f"cannot start task: {exc}") from exc
    # The child's ru_maxrss starts from our peak at its exec (Linux carries the parent's
    # peak over); read ours after the exec so that only a larger figure counts as its own.
    parent_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return TaskProcess(popen, monotonic, parent_maxrss_kb)


class TaskProcess:
    """A started task: its pid (which is also its process group id) and how to end it."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        monotonic: Callable[[], float],
        parent_maxrss_kb: int = 0,
    ) -> None:
        self._popen = popen
        self._parent_maxrss_kb = parent_maxrss_kb
        self._monotonic = monotonic
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the child leads its own group
        self._pidfd = os.pidfd_open(self.pid)
        self._lock = threading.Lock()
        self._kill_grace: float | None = None
        self._before_reap: Callable[[], object] | None = None

    def request_kill(self, grace: float) -> None:
        """Ask :meth:`wait` to end the tree: TERM now, KILL after ``grace`` (0 = KILL now).

        A second request can only shorten the grace. Safe from any thread.
        """
        with self._lock:
            if self._kill_grace is None or grace < self._kill_grace:
                self._kill_grace = grace

    def wait(
        self,
        deadline: float | None = None,
        grace: float = 5.0,
        before_reap: Callable[[], object] | None = None,
    ) -> ExitInfo:
        """Wait for the task to exit; kill its tree at ``deadline`` (monotonic) or on request.

        Returns once the leader has been reaped; when planner killed it, also once no live
        process is left in its group (or after the grace period and a ``SIGKILL``).
        """
        self._before_reap = before_reap
        try:
            while True:
                with self._lock:
                    requested = self._kill_grace
                now = self._monotonic()
                if requested is not None:
                    return self._terminate(requested, timed_out=False, cancelled=True)
                if deadline is not None and now >= deadline:
                    return self._terminate(grace, timed_out=True, cancelled=False)
                timeout = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - now))
                if self._exited(timeout):
                    return self._reap()
        finally:
            os.close(self._pidfd)

    def _exited(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._pidfd], [], [], timeout)
        return bool(ready)

    def _reap(self, *, timed_out: bool = False, cancelled: bool = False) -> ExitInfo:
        if self._before_reap is not None:
            self._before_reap()
            self._before_reap = None
        _, status, usage = os.wait4(self.pid, 0)
        ended = self._monotonic()
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code  # we reaped it; keep Popen from waiting again
        if not (timed_out or cancelled):
            _signal_group(self.pgid, signal.SIGTERM)  # leftovers of a finished task
        return ExitInfo(
            exit_code=128 - code if code < 0 else code,
            ended_mono=ended,
            # Linux carries the parent's peak RSS at fork over into the child's
            # ru_maxrss: only a figure above it is the task's own.
            maxrss_kb=int(usage.ru_maxrss) if usage.ru_maxrss > self._parent_maxrss_kb else 0,
            cpu_s=float(usage.ru_utime + usage.ru_stime),
            timed_out=timed_out,
            cancelled=cancelled,
        )

    def _terminate(self, grace: float, *, timed_out: bool, cancelled: bool) -> ExitInfo:
        _signal_group(self.pgid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
        end = self._monotonic() + grace
        info: ExitInfo | None = None
        while True:
            with self._lock:
                if self._kill_grace is not None and self._kill_grace < grace:
                    end = min(end, self._monotonic() + self._kill_grace)
                    grace = self._kill_grace
            remaining = end - self._monotonic()
            if info is None and self._exited(max(0.0, min(_POLL_S, remaining))):
                info = self._reap(timed_out=timed_out, cancelled=cancelled)
            if info is not None and not group_alive(self.pgid):
                return info
            if remaining <= 0:
                break
            if info is not None:
                threading.Event().wait(min(0.02, max(0.0, remaining)))
        _signal_group(self.pgid, signal.SIGKILL)
        if info is None:
            info = self._reap(timed_out=timed_out, cancelled=cancelled)
        settle = self._monotonic() + 1.0
        while group_alive(self.pgid) and self._monotonic() < settle:
            threading.Event().wait(0.01)
        return info


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # The group exists, but perhaps only as zombies nobody reaps: look at each member.
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``, from ``/proc``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


@dataclass(frozen=True)
class LeftTask:
    """A task process a dead run left on this host, as its environment describes it."""

    pgid: int
    step: str
    account: str | None
    attempt: int
    quantity: float | None
    started: float  # epoch seconds


def tasks_of_run(run_id: str) -> dict[int, LeftTask]:
    """Process groups on this host with a live member started for ``run_id``.

    A run killed between spawning a task and recording it leaves a process no row
    names; its ``PLANNER_RUN_ID`` still tells whose it is (and ``PLANNER_STEP``,
    ``PLANNER_ACCOUNT``, ``PLANNER_ATTEMPT`` which task), so a takeover stops it and
    records it too.
    """
    import psutil

    found: dict[int, LeftTask] = {}
    entries = os.listdir("/proc") if os.path.isdir("/proc") else []
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        env = _environ(pid)
        if env.get("PLANNER_RUN_ID") != run_id:
            continue
        try:
            pgid = os.getpgid(pid)
            started = psutil.Process(pid).create_time()
        except (OSError, psutil.Error):
            continue
        if pgid in found and pid != pgid:
            continue  # the group leader (the task itself) describes the group best
        quantity = env.get("PLANNER_QUANTITY", "")
        found[pgid] = LeftTask(
            pgid=pgid,
            step=env.get("PLANNER_STEP", "?"),
            account=env.get("PLANNER_ACCOUNT") or None,
            attempt=int(env.get("PLANNER_ATTEMPT", "1") or 1),
            quantity=float(quantity) if quantity.replace(".", "", 1).isdigit() else None,
            started=started,
        )
    return found


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read().split(b"\0")
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(b"=")
        if sep and name.startswith(b"PLANNER_"):
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def kill_group(
    pgid: int, grace: float, sleep: Callable[[float], None], *, run_id: str | None = None
) -> bool:
    """Stop a process group that is not our child: TERM, up to ``grace`` s, then KILL.

    With ``run_id``, only a group with a live member started for that run (its
    ``PLANNER_RUN_ID``) is touched, so a reused group id is left alone. Returns whether
    the group was signalled.
    """
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    members = group_members(pgid)
    if not members:
        return False
    if run_id is not None and not any(_environ(p).get("PLANNER_RUN_ID") == run_id for p in members):
        return False
    _signal_group(pgid, signal.SIGTERM)
    waited = 0.0
    while waited < grace and group_alive(pgid):
        sleep(0.05)
        waited += 0.05
    _signal_group(pgid, signal.SIGKILL)
    return True


def log_tail(path: Path, limit: int = STDERR_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log, as text (empty when unreadable); by default as
    much as the history keeps of a stderr tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
