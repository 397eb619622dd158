"""Real ``planner daemon`` processes for :mod:`tests.daemon.test_process`.

A :class:`Site` is one test's folder: a one-step pipeline whose step (``python3 step.py``)
sleeps the next duration of ``durations.json`` (a ``counter`` file says which), the
daemons started on it (``sys.executable -m planner daemon``, their output in a file each,
JSON decision lines), and the history they share, read through ``HistoryStore``.

Every wait is a poll with a deadline (:func:`wait_for`); every read of the runs also
checks that no two are ``running`` at once. :meth:`Site.cleanup` kills whatever is left:
the daemons and the ``planner run`` children and tasks they started, which live in
sessions of their own (found by their command line or working folder in the site).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import yaml

from planner.history import HistoryStore, RunRecord

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "grow"
LEADER_TTL_S = 2.0
GRACE_S = 20.0

#: The step: sleeps durations[n] for its n-th start (the last duration repeats).
STEP_SCRIPT = """\
import json
import pathlib
import time

here = pathlib.Path(__file__).resolve().parent
durations = json.loads((here / "durations.json").read_text())
counter = here / "counter"
text = counter.read_text().strip() if counter.exists() else ""
n = int(text or 0)
counter.write_text(str(n + 1))
time.sleep(durations[min(n, len(durations) - 1)])
"""

T = TypeVar("T")


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.2,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something true (returned), or fail after
    ``timeout`` seconds saying ``what`` was awaited, with ``context()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{more}")
        time.sleep(interval)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DaemonProcess:
    """One ``planner daemon`` child of the test, its stdout and stderr in ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[str]:
        """The complete lines written so far."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        return [ln for ln in lines[:-1] if ln.strip()]  # the last piece may be half-written

    def events(self) -> list[dict[str, Any]]:
        """The JSON decision lines so far (other lines, e.g. a traceback, are skipped)."""
        out = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "event" in record:
                    out.append(record)
        return out

    def find(self, event: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        """The events of kind ``event`` (any: None) whose text holds ``text``."""
        return [
            e
            for e in self.events()
            if (event is None or e["event"] == event) and (text is None or text in e["text"])
        ]

    def first(self, timeout: float = 60.0) -> dict[str, Any]:
        """The daemon's first line (it names the owner token and the metrics URL)."""
        found = wait_for(
            f"the first line of daemon {self.name}",
            self._first_or_exit,
            timeout,
            context=self.tail,
        )
        return found

    def _first_or_exit(self) -> dict[str, Any] | None:
        events = self.events()
        if events:
            return events[0]
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon {self.name} exited {self.proc.returncode}\n{self.tail()}")
        return None

    @property
    def owner(self) -> str:
        return str(self.first()["owner"])

    @property
    def metrics_url(self) -> str:
        match = re.search(r"metrics (http://\S+/metrics)", self.first()["text"])
        assert match, self.first()
        return match.group(1)

    def wait_event(
        self, what: str, event: str, text: str | None = None, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The first event of kind ``event`` holding ``text``, waited for."""

        def check() -> dict[str, Any] | None:
            found = self.find(event, text)
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon {self.name} exited {self.proc.returncode} before {what}\n{self.tail()}"
                )
            return None

        return wait_for(what, check, timeout, context=self.tail)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        """SIGKILL the daemon alone (its children live in sessions of their own) and reap it,
        so that its pid is gone and no longer a zombie."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = GRACE_S + 15.0) -> int:
        """SIGTERM, then its exit code (waited for up to ``timeout``)."""
        self.send(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def tail(self, n: int = 40) -> str:
        lines = self.lines()[-n:]
        return f"--- daemon {self.name} (pid {self.pid}), last {len(lines)} lines:\n" + "\n".join(
            lines
        )


@dataclass
class Site:
    """One test's pipeline folder, its daemons and its history."""

    root: Path
    db_url: str = ""
    daemons: list[DaemonProcess] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _store: HistoryStore | None = None

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        if not self.db_url:
            self.db_url = f"sqlite:///{self.root / 'history.db'}"
        (self.root / "step.py").write_text(STEP_SCRIPT)

    @property
    def pipeline_file(self) -> Path:
        return self.root / f"{PIPELINE}.yaml"

    def write_pipeline(
        self,
        durations: Sequence[float] | None = None,
        *,
        cadence: str = "2s",
        max_interval: str | None = "6s",
    ) -> Path:
        """The pipeline file (cadence, policy predicted, one step ``python3 step.py``)
        and, when given, the step's durations."""
        if durations is not None:
            (self.root / "durations.json").write_text(json.dumps(list(durations)))
        schedule: dict[str, Any] = {"cadence": cadence, "policy": "predicted"}
        if max_interval is not None:
            schedule["max_interval"] = max_interval
        data = {
            "name": PIPELINE,
            "schedule": schedule,
            "concurrency": {"max": 1},
            "steps": [{"id": "work", "command": ["python3", "step.py"]}],
        }
        self.pipeline_file.write_text(yaml.safe_dump(data, sort_keys=False))
        return self.pipeline_file

    def start(self, name: str, *extra: str, env: dict[str, str] | None = None) -> DaemonProcess:
        """``planner daemon`` on the site's pipeline and history, JSON lines; ``env``:
        more environment (``PLANNER_HOST_ID``, ``PLANNER_LEASE_TTL``: its runs inherit
        them). A PostgreSQL URL goes in ``$PLANNER_DB``, never on the command line."""
        log_path = self.root / f"daemon-{name}.log"
        server = not self.db_url.startswith("sqlite")
        argv = [
            sys.executable,
            "-m",
            "planner",
            "daemon",
            str(self.pipeline_file),
            *([] if server else ["--db", self.db_url]),
            "--leader-ttl",
            f"{LEADER_TTL_S:g}s",
            "--retrain",
            "off",
            "--grace",
            f"{GRACE_S:g}s",
            "--log-json",
            *extra,
        ]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), environ.get("PYTHONPATH")])
        )
        environ["PYTHONUNBUFFERED"] = "1"
        if server:
            environ["PLANNER_DB"] = self.db_url
        environ.update(env or {})
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=environ,
                start_new_session=True,
            )
        daemon = DaemonProcess(name, proc, log_path)
        self.daemons.append(daemon)
        return daemon

    # -- the history ------------------------------------------------------------------

    @property
    def store(self) -> HistoryStore:
        if self._store is None:
            self._store = HistoryStore(self.db_url)
        return self._store

    def runs(self) -> list[RunRecord]:
        """The pipeline's runs, oldest first; notes any moment with two ``running``."""
        runs = sorted(self.store.list_runs(PIPELINE), key=lambda r: (r.started_at, r.run_id))
        running = [r.run_id for r in runs if r.status == "running"]
        if len(running) > 1:
            self.violations.append(f"{utcnow():%H:%M:%S.%f}: two runs running at once: {running}")
        return runs

    def succeeded(self) -> list[RunRecord]:
        return [r for r in self.runs() if r.status == "succeeded"]

    def counter(self) -> int:
        """How many times the step started."""
        try:
            return int((self.root / "counter").read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def assert_runs_sane(self) -> list[RunRecord]:
        """No two runs overlap (each starts at or after the previous one's end), none was
        ever seen running beside another, and each run id is there once."""
        runs = self.runs()
        assert not self.violations, self.violations
        ids = [r.run_id for r in runs]
        assert len(ids) == len(set(ids)), ids
        for before, after in itertools.pairwise(runs):
            assert before.finished_at is not None, (
                f"run {after.run_id} started while {before.run_id} had not finished"
                f"\n{self.describe()}"
            )
            assert after.started_at >= before.finished_at, (
                f"run {after.run_id} started at {after.started_at} before {before.run_id} "
                f"finished at {before.finished_at}\n{self.describe()}"
            )
        return runs

    def assert_stopped_cleanly(self, daemon: DaemonProcess) -> None:
        """After its exit: the daemon released its leadership, said nothing but ``stopped``
        after that, its last line says so, and it stored no decision after the release."""
        events = daemon.events()
        released = [i for i, e in enumerate(events) if e["text"] == "released its leadership"]
        assert released, daemon.tail()
        after = events[released[-1] + 1 :]
        assert [e["text"] for e in after] == ["stopped"], daemon.tail()
        assert json.loads(daemon.lines()[-1])["text"] == "stopped", daemon.tail()
        released_at = datetime.fromisoformat(events[released[-1]]["at"])
        late = [
            (d.at, d.kind, d.reason)
            for d in self.store.decisions(PIPELINE)
            if d.owner_id == daemon.owner and d.at > released_at
        ]
        assert not late, f"decisions stored after the release: {late}\n{daemon.tail()}"
        row = self.store.leaders([PIPELINE]).get(PIPELINE)
        # released, not merely expired (the row expires a TTL after the last beat anyway)
        assert row is None or row.owner_id != daemon.owner, row

    def describe(self) -> str:
        """The runs and every daemon's last lines (for failure messages)."""
        try:
            runs = sorted(self.store.list_runs(PIPELINE), key=lambda r: r.started_at)
            table = "\n".join(
                f"  {r.run_id} {r.status} {r.started_at:%H:%M:%S.%f} -> {r.finished_at:%H:%M:%S.%f}"
                if r.finished_at
                else f"  {r.run_id} {r.status} {r.started_at:%H:%M:%S.%f} -> ..."
                for r in runs
            )
        except Exception as exc:  # the failure message must not fail
            table = f"  (could not read the runs: {exc})"
        return "runs:\n" + table + "\n" + "\n".join(d.tail() for d in self.daemons)

    # -- the end ----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Kill every process left: daemons first, then their runs and tasks."""
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                _kill_group(daemon.proc.pid)
        kill_leftovers(self.root)
        for daemon in self.daemons:
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.proc.wait(timeout=10)
        if self._store is not None:
            self._store.close()
            self._store = None


def freeze_host(daemon: DaemonProcess, root: Path) -> list[psutil.Process]:
    """A host stops dead: SIGSTOP ``daemon``, and every ``planner run`` of the site and its
    tasks (all on that host: the test gives each daemon its own host id), so that their
    rows in the history stay as their last write left them; :func:`kill_frozen` ends
    them. Processes of other daemons' runs must not be running then."""
    victims = [psutil.Process(daemon.pid)]
    for run in run_children(root).values():
        with contextlib.suppress(psutil.Error):
            victims += [run, *run.children(recursive=True)]
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.suspend()
    return victims


def kill_frozen(daemon: DaemonProcess, victims: list[psutil.Process]) -> None:
    """SIGKILL what :func:`freeze_host` stopped, and reap the daemon."""
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    daemon.proc.wait(timeout=10)
    psutil.wait_procs(victims, timeout=10)


def _kill_group(pid: int) -> None:
    """SIGKILL ``pid``'s process group (never the test's own: then ``pid`` alone)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid == os.getpgrp():
            os.kill(pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGKILL)


def site_processes(root: Path) -> list[psutil.Process]:
    """Processes of the site: its path in their command line, or their working folder in
    it (the tasks: ``python3 step.py`` runs in the pipeline's folder)."""
    prefix = str(root) + os.sep
    own = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        info = proc.info
        if info["pid"] in own or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info["cmdline"] or [])
        cwd = info["cwd"] or ""
        if prefix in cmdline or cwd == str(root) or cwd.startswith(prefix):
            found.append(proc)
    return found


def kill_leftovers(root: Path) -> None:
    """SIGKILL the process groups of every process of the site until none is left."""
    for _ in range(5):
        found = site_processes(root)
        if not found:
            return
        for proc in found:
            _kill_group(proc.pid)
        psutil.wait_procs(found, timeout=5)


def run_children(root: Path) -> dict[str, psutil.Process]:
    """Run id -> its live ``planner run`` process, for the runs of the site."""
    out = {}
    for proc in site_processes(root):
        with contextlib.suppress(psutil.Error):
            argv = proc.cmdline()
            if "run" in argv and "--run-id" in argv:
                out[argv[argv.index("--run-id") + 1]] = proc
    return out
