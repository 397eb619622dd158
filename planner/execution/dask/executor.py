"""The scheduling host's side of the Dask executor: tasks submitted to a Dask cluster.

:class:`DaskExecutor` implements :class:`~planner.execution.executor.Executor`. Each
attempt is one Dask task (:func:`~planner.execution.dask.worker.run_task`) with a fresh
token, ``retries=0`` and ``pure=False``; the runner here records the attempts as for
local tasks. What the Dask pitfalls measured with distributed 2026.8 need:

- **No silent re-run** when a worker dies mid-task (the scheduler re-runs it elsewhere,
  ``allowed-failures`` = 3): the worker-side function claims its token on the scheduler
  before it starts anything (:mod:`.claims`), and a second claim is refused. The client
  learns the loss from the plugin's ``planner-lost`` event (or from the refused re-run)
  and reports the attempt ``lost``: the loop records it ``interrupted`` and planner's
  retry policy alone decides (class ``lost``, see :mod:`planner.execution.retry`).
- **Stopping a task kills its tree**, not just ``future.cancel()`` (which leaves the
  subprocess running): a timeout or :meth:`DaskExecutor.request_kill` revokes the token
  on the scheduler (a task not started yet never starts), cancels the future, and sends
  :func:`~planner.execution.dask.worker.kill_task` to the workers with ``Client.run``.
  Deadlines are kept here, on the run's clock; the kill reports ``timed_out``.
- **A dead worker takes its tasks with it**: each worker process has a watchdog process
  that kills its task groups once the worker is gone (SIGKILL included).
- **A lost scheduler connection** (the client is no longer ``running``; it cancels every
  future): every waiting attempt is reported ``lost``, and the executor asks the run to
  stop through the :class:`~planner.execution.control.RunControl` it was given
  (``control``; the service passes the runner's); a task the loop still starts then is
  not submitted, and is reported ``cancelled``. The loop records the running attempts
  ``interrupted``, the unstarted tasks ``cancelled``, and ends the run ``cancelled``
  (exit code 1). Tasks still running on workers end when the workers give up on the
  scheduler (``dask worker --death-timeout``): their watchdog kills them then.

Recorded figures: the task's run time, peak RSS and CPU are measured on the worker; the
attempt's end is its start here plus that run time (queueing and transfer are not
counted). The last 64 KiB of the task's output come back and are written to the log
path here, so ``planner show`` shows the stderr tail. ``memory_limit`` of a step is not
enforced on Dask (:meth:`memory_in_use` is ``None``).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from planner.errors import ClusterError
from planner.execution.executor import TaskExit, TaskHandle
from planner.execution.process import ExitInfo, Launch

if TYPE_CHECKING:
    from planner.clock import Clock
    from planner.execution.control import RunControl

__all__ = ["ClusterState", "DaskExecutor", "DaskTask"]

_POLL_S = 0.2
#: After a kill was sent, how long the worker's answer may take beyond the grace.
_KILL_SLACK_S = 10.0


@dataclass(frozen=True)
class ClusterState:
    """The cluster's workers now: slots (sum of threads) and memory (bytes)."""

    workers: int
    slots: int
    memory_limit: int
    memory_used: int


@dataclass
class DaskTask:
    """A submitted attempt (a :class:`~planner.execution.executor.TaskHandle`: no pid
    or process group here, they are on a worker)."""

    token: str
    launch: Launch
    future: Any  # distributed.Future (untyped); None: never submitted (the run stops)
    submitted_mono: float
    kill: tuple[float, str] | None = None  # (grace, reason) once asked
    kill_sent_mono: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Set by the future's done callback: waiting never goes through ``result(timeout)``,
    #: whose ``sync`` loses the result (UnboundLocalError) when the answer comes just as
    #: the timeout cancels the wait (seen here once in 97 tasks).
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int | None:
        return None

    @property
    def pgid(self) -> int | None:
        return None


class DaskExecutor:
    """Tasks on the Dask cluster whose scheduler is at ``address`` (``tcp://host:port``).

    ``connect_timeout``: seconds to reach the scheduler; ``worker_wait_s``: how long
    :meth:`open` (and :meth:`cluster`) wait for a first worker; ``control``: the run's
    stop switch, told when the scheduler connection is lost.
    """

    def __init__(
        self,
        address: str,
        *,
        connect_timeout: float = 10.0,
        worker_wait_s: float = 60.0,
        sample_interval: float = 0.25,
        control: RunControl | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.worker_wait_s = worker_wait_s
        self.sample_interval = sample_interval
        self.control = control
        self._client: Any = None  # distributed.Client (its methods are untyped)
        self._clock: Clock | None = None
        self._lost: set[str] = set()
        self._tokens: list[str] = []
        self._broken = False
        self._lock = threading.Lock()

    # -- the connection -------------------------------------------------------------------

    def connect(self) -> Any:
        """The client, connected (once) with the claims plugin in place, once a worker is
        there; raises :class:`ClusterError` when either does not happen in time."""
        if self._client is not None:
            return self._client
        try:
            import distributed

            from planner.execution.dask.claims import LOST_TOPIC, ClaimsPlugin
        except ImportError as exc:
            raise ClusterError(
                self.address, f"dask is not installed ({exc}): pip install 'planner[dask]'"
            ) from None

        try:
            make: Any = distributed.Client
            client = make(self.address, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                self.address, f"cannot reach the Dask scheduler: {exc}".strip()
            ) from None
        try:
            client.register_plugin(ClaimsPlugin(), name="planner-claims")
            client.subscribe_topic(LOST_TOPIC, self._on_lost)
            client.wait_for_workers(1, timeout=self.worker_wait_s)
        except TimeoutError:
            client.close()
            raise ClusterError(
                self.address, f"no Dask worker joined within {self.worker_wait_s:g}s"
            ) from None
        except BaseException:
            client.close()
            raise
        self._client = client
        return client

    def cluster(self) -> ClusterState:
        """The workers' slots and memory now (connects first)."""
        info = self.connect().scheduler_info(n_workers=-1)
        workers = list(info.get("workers", {}).values())
        limits = [int(w.get("memory_limit") or 0) for w in workers]
        return ClusterState(
            workers=len(workers),
            slots=sum(int(w.get("nthreads", 0)) for w in workers),
            memory_limit=sum(limits) if all(limits) else 0,  # 0: some worker has no limit
            memory_used=sum(int((w.get("metrics") or {}).get("memory") or 0) for w in workers),
        )

    def _on_lost(self, event: Any) -> None:
        _, message = event
        with self._lock:
            self._lost.add(str(message.get("token")))

    def _connection_ok(self) -> bool:
        client = self._client
        if self._broken or client is None:
            return False
        if client.status == "running":
            return True
        with self._lock:  # once: a second stop request would kill the running tasks at once
            first, self._broken = not self._broken, True
        if first and self.control is not None:
            self.control.request_stop()  # start nothing more; the loop ends the run
        return False

    # -- the Executor interface -----------------------------------------------------------

    def open(self, clock: Clock) -> None:
        self._clock = clock
        self.connect()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if client.status == "running" and self._tokens:
                client.sync(client.scheduler.planner_forget, tokens=self._tokens)
        except Exception:
            pass
        finally:
            self._tokens = []
            client.close(timeout=5)

    def start(self, launch: Launch) -> DaskTask:
        from planner.execution.dask.claims import task_key
        from planner.execution.dask.worker import run_task

        clock = self._clock
        assert clock is not None, "DaskExecutor.open() first"
        token = uuid.uuid4().hex
        submitted = clock.monotonic()
        if not self._connection_ok():  # the run is stopping: this one never starts
            return DaskTask(token, launch, None, submitted, kill=(0.0, "cancel"))
        future = self._client.submit(
            run_task,
            token,
            launch,
            self.sample_interval,
            key=task_key(token),
            pure=False,
            retries=0,
        )
        self._tokens.append(token)
        task = DaskTask(token, launch, future, submitted)
        future.add_done_callback(lambda _: task.done.set())
        return task

    def wait(self, handle: TaskHandle, deadline: float | None, kill_grace: float) -> TaskExit:
        task, clock = _own(handle), self._clock
        assert clock is not None, "DaskExecutor.open() first"
        if task.future is None:
            return self._lost_exit(task, clock.monotonic())  # (cancelled: never submitted)
        while True:
            now = clock.monotonic()
            with self._lock:
                lost = task.token in self._lost
            if lost or not self._connection_ok():
                return self._lost_exit(task, now)
            if deadline is not None and now >= deadline and task.kill is None:
                self._ask_kill(task, kill_grace, "timeout")
            sent = task.kill_sent_mono
            if sent is not None and now - sent > (task.kill or (0.0, ""))[0] + _KILL_SLACK_S:
                return self._lost_exit(task, now)  # killed, and the worker never answered
            wait_s = _POLL_S if deadline is None else max(0.01, min(_POLL_S, deadline - now))
            if not task.done.wait(wait_s):
                continue
            try:
                result = task.future.result()
            except CancelledError:
                self._connection_ok()  # (the client cancels every future when it is lost)
                return self._lost_exit(task, clock.monotonic())
            except Exception as exc:  # planner's function failed on the worker, not the task
                self._note(task, f"the Dask task failed: {exc!r}")
                return self._lost_exit(task, clock.monotonic())
            return self._exit_of(task, result, clock.monotonic())

    def request_kill(self, handle: TaskHandle, grace: float) -> None:
        self._ask_kill(_own(handle), grace, "cancel")

    def memory_in_use(self, handle: TaskHandle) -> int | None:
        return None  # measured on the worker, not streamed here: no memory_limit on Dask

    # -- the pieces -----------------------------------------------------------------------

    def _ask_kill(self, task: DaskTask, grace: float, reason: str) -> None:
        with task.lock:
            if task.kill is not None and task.kill[0] <= grace:
                return
            task.kill = (grace, reason if task.kill is None else task.kill[1])
            reason = task.kill[1]
        if self._clock is not None:
            task.kill_sent_mono = self._clock.monotonic()
        client = self._client
        if client is None or not self._connection_ok():
            return
        threading.Thread(
            target=self._send_kill, args=(client, task, grace, reason), daemon=True
        ).start()

    def _send_kill(self, client: Any, task: DaskTask, grace: float, reason: str) -> None:
        from planner.execution.dask.worker import kill_task

        try:
            if client.sync(client.scheduler.planner_revoke, token=task.token):
                if task.future is not None:
                    task.future.cancel()  # never claimed: it will not start
                return
            client.run(kill_task, task.token, grace, reason, on_error="ignore")
        except Exception:
            pass

    def _exit_of(self, task: DaskTask, result: dict[str, Any], now: float) -> TaskExit:
        if result.get("refused"):
            return self._lost_exit(task, now)
        log = result.get("log") or b""
        task.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        task.launch.log_path.write_bytes(log)
        if "error" in result:
            return self._failed_exit(task, now, str(result["error"]))
        ended = min(now, task.submitted_mono + float(result["elapsed_s"]))
        info = ExitInfo(
            exit_code=int(result["exit_code"]),
            ended_mono=ended,
            maxrss_kb=0,
            cpu_s=float(result["cpu_s"] or 0.0),
            timed_out=bool(result["timed_out"]),
            cancelled=bool(result["cancelled"]),
        )
        return TaskExit(info, result["peak_rss_mb"], result["cpu_s"])

    def _lost_exit(self, task: DaskTask, now: float) -> TaskExit:
        """The attempt's end is unknown: ``lost`` (``cancelled`` when a stop asked for it
        and it never started)."""
        if task.future is not None:
            task.future.cancel()
        cancelled = task.kill is not None and task.kill[1] == "cancel"
        timed_out = task.kill is not None and task.kill[1] == "timeout"
        info = ExitInfo(
            exit_code=-1,
            ended_mono=now,
            maxrss_kb=0,
            cpu_s=0.0,
            timed_out=timed_out,
            cancelled=cancelled,
            lost=not (cancelled or timed_out),
        )
        return TaskExit(info, None, None)

    @staticmethod
    def _note(task: DaskTask, what: str) -> None:
        """Add a line of planner's to the task's log here."""
        path = task.launch.log_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(f"planner: {what}\n".encode())

    def _failed_exit(self, task: DaskTask, now: float, what: str) -> TaskExit:
        """The command could not start on the worker (exit 127, as locally)."""
        self._note(task, what)
        info = ExitInfo(exit_code=127, ended_mono=now, maxrss_kb=0, cpu_s=0.0)
        return TaskExit(info, None, None)


def _own(handle: TaskHandle) -> DaskTask:
    if not isinstance(handle, DaskTask):
        raise TypeError(f"not a task of DaskExecutor: {handle!r}")
    return handle
