"""The daemon's core: per pipeline, lead it, start its runs when due, decide the next.

Threads: ``tick()`` runs on the timer's control thread (leadership, and re-applying any
decision not in force), ``due(name)`` on a worker of the ``runs`` executor (it starts the
run's child process and waits for it), ``retrain()`` on the ``train`` executor, and
``reload()``/``stop()`` on the main thread (signals). What each decides comes from
:mod:`planner.service.scheduling`; every decision is logged in one line and stored.

Tests drive the same object tick by tick: a :class:`~planner.clock.FakeClock` in the
instance, a launcher that fakes runs on it, and a timer that records what is scheduled.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from planner.daemon.children import (
    Child,
    Launcher,
    RunSpec,
    TrainSpec,
    interrupt,
    training_result,
)
from planner.daemon.entries import DaemonSettings, Entry, Schedule, save_copy
from planner.daemon.logs import DecisionLogger
from planner.daemon.reports import Reporter, one_line
from planner.errors import ConfigError, PlannerError
from planner.service.scheduling import RESUMED
from planner.status import DecisionKind
from planner.units import format_duration

if TYPE_CHECKING:
    from typing import Any

    from planner.history import LeaseHolder, LeaseOwner, RunRecord
    from planner.service.instance import Instance
    from planner.service.scheduling import NextStart

__all__ = ["Daemon"]

#: ``planner run`` exit codes the daemon reads (see the README's exit codes).
_EXIT_BAD_INPUT = 2
_EXIT_RUN_ACTIVE = 3


class Daemon:
    """Leads pipelines, starts their runs as child processes, decides their next starts."""

    def __init__(
        self,
        instance: Instance,
        entries: Sequence[Entry],
        *,
        owner: LeaseOwner,
        launcher: Launcher,
        logger: DecisionLogger,
        settings: DaemonSettings | None = None,
    ) -> None:
        self.instance = instance
        self.entries = {e.name: e for e in entries}
        self.owner = owner
        self.launcher = launcher
        self.report = Reporter(instance, logger, owner.owner_id)
        self.settings = settings or DaemonSettings()
        self.timer: Schedule | None = None
        self._stopping = threading.Event()  # start nothing more
        self._leaving = threading.Event()  # stop waiting for children too
        self._training: Child | None = None

    # -- leadership -------------------------------------------------------------------

    def tick(self) -> None:
        """Renew or take each pipeline's leadership; re-apply decisions not in force."""
        if self._stopping.is_set():
            return
        for entry in list(self.entries.values()):
            try:
                self._lead(entry)
            except (PlannerError, OSError) as exc:  # StoreError: the history is unreachable
                self.report.say(entry.name, "error", f"leadership: {exc}")
                self._expire_if_stale(entry)
            except Exception as exc:  # anything else the history may raise
                self.report.say(entry.name, "error", f"history unreachable: {one_line(exc)}")
                self._expire_if_stale(entry)

    def _lead(self, entry: Entry) -> None:
        store, now, ttl = self.instance.store, self.instance.clock.now(), self.settings.leader_ttl_s
        sent = self.instance.clock.monotonic()  # before the write: never after the server's
        if entry.leader:  # the heartbeat never waits for a run's decision (entry.lock)
            if store.heartbeat_leader(entry.name, self.owner.owner_id, ttl, now):
                entry.beat_at, entry.beat_mono = now, sent
                if entry.lock.acquire(blocking=False):
                    try:
                        self._reapply(entry)
                    finally:
                        entry.lock.release()
                return
            self._lose(entry, "its leadership was taken by another daemon")
            return
        result = store.acquire_leader(entry.name, self.owner, ttl, now)
        if not result.acquired:
            return
        with entry.lock:
            entry.leader, entry.beat_at, entry.beat_mono = True, now, sent
            before = result.previous
            text = "now leads it"
            if before is not None:
                text += f" (took over from {before.host} pid {before.pid}: {result.reason})"
            self.report.say(entry.name, "leader", text, owner=self.owner.owner_id)
            self.report.record(entry.name, DecisionKind.LEADER, text)
            if entry.child is None:
                # decided on a worker (planning takes a moment; heartbeats must not wait)
                from planner.service.scheduling import NextStart

                entry.resume_pending = True
                why = "just took it over: the next start is decided from the history"
                self._apply(entry, NextStart(now, why))

    def _expire_if_stale(self, entry: Entry) -> None:
        """Without a heartbeat for a whole lifetime another daemon may lead: stand down.

        Judged on this host's monotonic clock from when the last successful heartbeat was
        sent, never on wall-clock times from different hosts: the row's expiry (stamped by
        the lease clock after that moment) is never earlier than this."""
        beat = entry.beat_mono
        if entry.leader and beat is not None:
            age = self.instance.clock.monotonic() - beat
            if age >= self.settings.leader_ttl_s:
                self._lose(entry, f"no heartbeat for {format_duration(age)}")

    def _lose(self, entry: Entry, why: str) -> None:
        entry.leader = False
        if self.timer is not None:
            self.timer.unschedule(entry.name)
        self.report.say(entry.name, "leader", f"no longer leads it: {why}")

    def _reapply(self, entry: Entry) -> None:
        """Schedule the decided start again if the timer lost it (a start missed past the
        scheduler's grace, say): never one that already fired or is firing now."""
        nxt = entry.next
        if entry.child is not None or nxt is None or nxt.at is None or self.timer is None:
            return
        began, decided = entry.began_at, entry.decided_at
        if began is not None and decided is not None and began >= decided:
            return  # it fired; the run's end decides the next
        late = (self.instance.clock.now() - nxt.at).total_seconds()
        if 0 <= late < 2 * self.settings.tick_s:
            return  # just due: the timer is submitting it
        current = self.timer.scheduled(entry.name)
        if current is None or abs((current - nxt.at).total_seconds()) > 1.0:
            self.timer.schedule(entry.name, nxt.at)

    # -- runs -------------------------------------------------------------------------

    def due(self, name: str) -> None:
        """A pipeline's start is due: run it in a child and decide the next start."""
        entry = self.entries.get(name)
        if entry is None or self._stopping.is_set():
            return
        from planner.execution.runner import new_run_id
        from planner.service.scheduling import active_run

        with entry.lock:
            if not entry.leader or entry.child is not None:
                return
            entry.began_at = self.instance.clock.now()
            try:
                holder = active_run(self.instance, name)
                if holder is not None:
                    self._defer(entry, holder)
                    return
                if entry.resume_pending or entry.deferred_by is not None:
                    # just led, or the run we waited for is over: go on from the history
                    entry.resume_pending, entry.deferred_by = False, None
                    nxt = self._resume(entry)
                    soon = self.instance.clock.now() + timedelta(seconds=0.5)
                    if nxt.at is None or nxt.at > soon:
                        self._decide(entry, nxt)
                        return
                    self._say_decision(entry, nxt)  # due now: said, stored, started below
            except Exception as exc:
                self._failed(entry, f"could not read the history: {one_line(exc)}")
                return
            run_id = new_run_id(self.instance.clock.now())
            log_file = entry.folder / "runs" / f"{run_id}.log"
            spec = RunSpec(
                entry.copy,
                entry.file,
                run_id,
                log_file,
                self.settings.run_stop_grace_s,
                entry.models_dir,
            )
            try:
                child = self.launcher.start_run(spec)
            except OSError as exc:
                self._failed(entry, f"could not start planner run: {exc}")
                return
            entry.child, entry.run_id = child, run_id
            self.report.say(
                name,
                "started",
                f"run {run_id} started (pid {child.pid}; output {log_file})",
                run_id=run_id,
                pid=child.pid,
            )
            self.report.record(
                entry.name, DecisionKind.STARTED, f"run {run_id} started", run_id=run_id
            )
        code = self._wait(child)
        with entry.lock:
            try:
                if code is None:  # leaving: the run goes on under its own lease
                    return
                try:
                    self._ended(entry, run_id, code, log_file)
                except Exception as exc:
                    self._failed(entry, f"after run {run_id}: {one_line(exc)}")
            finally:
                # only now: running() (what a stop waits for) covers the decision after
                # the run, so that it is never taken after the leadership is released
                entry.child = None

    def _wait(self, child: Child) -> int | None:
        """The child's exit code; ``None`` when the daemon leaves before it ends."""
        while True:
            code = child.poll()
            if code is not None:
                return code
            if self._leaving.wait(self.settings.poll_s):
                return None

    def _ended(self, entry: Entry, run_id: str, code: int, log_file: Path) -> None:
        from planner.service.scheduling import active_run, decide_after, refused

        store, now = self.instance.store, self.instance.clock.now()
        run = store.get_run(run_id)
        if run is None:
            holder = active_run(self.instance, entry.name) if code == _EXIT_RUN_ACTIVE else None
            if holder is not None:
                self._defer(entry, holder)
                return
            what = "the pipeline file was refused" if code == _EXIT_BAD_INPUT else "it crashed"
            why = f"run {run_id} did not start ({what}: exit {code}; see {log_file})"
            self.report.alert(entry.pipeline, "refused", why, run_id=run_id)
            self._decide(entry, refused(entry.pipeline, why, now=now))
            return
        text, detail = self._result(entry.name, run, code)
        self.report.say(entry.name, "finished", text, run_id=run_id, **detail)
        self.report.record(entry.name, DecisionKind.FINISHED, text, run_id=run_id, detail=detail)
        if run.status == "running":  # the child died: its lease expires, then is taken over
            run = store.get_run(run_id) or run
        self._decide(
            entry,
            decide_after(
                self.instance,
                entry.pipeline,
                run,
                now=now,
                misfire_grace_s=self.settings.misfire_grace_s,
            ),
        )

    def _result(self, pipeline: str, run: RunRecord, code: int) -> tuple[str, dict[str, Any]]:
        run_id, status, duration_s = run.run_id, run.status, run.duration_s
        concurrency = run.concurrency
        plans = self.instance.store.plans(pipeline, 1, run_id=run_id)
        predicted = plans[0].predicted_s if plans else None
        bound = plans[0].bound_s if plans else None
        detail = {
            "status": status,
            "exit_code": code,
            "duration_s": duration_s,
            "predicted_s": predicted,
            "bound_s": bound,
            "concurrency": concurrency,
        }
        if status == "running":
            return (
                f"run {run_id}: planner run ended (exit {code}) before the run did: its lease "
                "expires, then the next run takes it over as abandoned",
                detail,
            )
        text = f"run {run_id} {status}"
        if duration_s is not None:
            text += f" in {format_duration(duration_s)}"
            if predicted is not None and bound is not None:
                text += (
                    f" (predicted {format_duration(predicted)}, bound {format_duration(bound)}"
                    f", concurrency {concurrency})"
                )
        return text, detail

    def _defer(self, entry: Entry, holder: LeaseHolder) -> None:
        from planner.service.scheduling import deferred

        nxt = deferred(entry.pipeline, holder, now=self.instance.clock.now())
        if entry.deferred_by != holder.run_id:  # once per run that holds the pipeline
            entry.deferred_by = holder.run_id or "?"
            self.report.alert(entry.pipeline, "deferred", nxt.reason, run_id=holder.run_id)
            self.report.say(entry.name, "deferred", nxt.reason, run_id=holder.run_id)
            self.report.record(
                entry.name, DecisionKind.DEFERRED, nxt.reason, run_id=holder.run_id, nxt=nxt
            )
        self._apply(entry, nxt)

    def _failed(self, entry: Entry, why: str) -> None:
        from planner.service.scheduling import refused

        self.report.say(entry.name, "error", why)
        self._apply(entry, refused(entry.pipeline, why, now=self.instance.clock.now()))

    def _resume(self, entry: Entry) -> NextStart:
        from planner.service.scheduling import resume

        return resume(
            self.instance,
            entry.pipeline,
            now=self.instance.clock.now(),
            misfire_grace_s=self.settings.misfire_grace_s,
        )

    def _decide(self, entry: Entry, nxt: NextStart) -> None:
        """Log, store and apply a decision about the next start."""
        self._say_decision(entry, nxt)
        self._apply(entry, nxt)

    def _say_decision(self, entry: Entry, nxt: NextStart) -> None:
        """Log and store a decision about the next start."""
        when = "none: runs start only when asked"
        if nxt.at is not None:
            wait = (nxt.at - self.instance.clock.now()).total_seconds()
            soon = "due now" if wait < 0.5 else f"in {format_duration(wait)}"
            when = f"{nxt.at:%Y-%m-%d %H:%M:%S}Z ({soon})"
        if nxt.kind == RESUMED:
            when += f" as decided at {str(nxt.detail.get('decided_at', '?'))[:19]}Z"
        self.report.say(
            entry.name,
            nxt.kind,
            f"next start {when}: {nxt.reason}",
            next_start=nxt.at,
            interval_s=nxt.interval_s,
            **nxt.detail,
        )
        kind = DecisionKind.SCHEDULED if nxt.kind == RESUMED else nxt.kind
        self.report.record(entry.name, kind, nxt.reason, run_id=nxt.run_id, nxt=nxt)

    def _apply(self, entry: Entry, nxt: NextStart) -> None:
        entry.next, entry.decided_at = nxt, self.instance.clock.now()
        if self.timer is None or not entry.leader or self._stopping.is_set():
            return
        if nxt.at is None:
            self.timer.unschedule(entry.name)
        else:
            self.timer.schedule(entry.name, nxt.at)

    # -- retraining -------------------------------------------------------------------

    def retrain(self) -> None:
        """Retrain the models of the pipelines this daemon leads, one at a time, each in a
        ``planner train`` child (the same code, its threads limited to one)."""
        for entry in list(self.entries.values()):
            if self._stopping.is_set():
                return
            if entry.leader:
                self._retrain(entry)

    def _retrain(self, entry: Entry) -> None:
        now = self.instance.clock.now()
        stamp = f"{now:%Y%m%dT%H%M%SZ}"
        out = entry.folder / "train" / f"{stamp}.json"
        spec = TrainSpec(
            entry.name,
            entry.pipeline.schedule.quantile,
            out,
            out.with_suffix(".log"),
            entry.models_dir,
        )
        try:
            child = self.launcher.start_training(spec)
        except OSError as exc:
            why = f"retraining could not start: {exc}"
            self.report.alert(entry.pipeline, "retrain_failed", why)
            return
        self._training = child
        code = self._wait(child)
        self._training = None
        if code is None:
            return
        text, detail = training_result(code, out, spec.log_file)
        self.report.say(entry.name, "retrained", text, **detail)
        self.report.record(entry.name, DecisionKind.RETRAINED, text, detail=detail)
        if code != 0:
            self.report.alert(entry.pipeline, "retrain_failed", text)

    # -- reload and stop ----------------------------------------------------------------

    def reload(self) -> None:
        """Read every pipeline file again; one that no longer validates is reported and
        its loaded version kept."""
        for entry in list(self.entries.values()):
            try:
                self._reload(entry)
            except Exception as exc:  # the history or the state dir: said, never fatal
                self.report.say(entry.name, "error", f"reload: {one_line(exc)}")

    def _reload(self, entry: Entry) -> None:
        from planner.config import check_pipeline_file

        pipeline, issues = check_pipeline_file(entry.file)
        if pipeline is None or issues:
            first = str(ConfigError(str(entry.file), issues)).splitlines()[0]
            self.report.say(
                entry.name,
                "reload",
                f"{first} ({len(issues)} problem(s)): keeping the version loaded at "
                f"{entry.loaded_at:%Y-%m-%d %H:%M:%S}Z",
            )
            return
        if pipeline.name != entry.name:
            self.report.say(
                entry.name,
                "reload",
                f"{entry.file}: the name changed to {pipeline.name!r}: restart the daemon "
                "to serve it; keeping the loaded version",
            )
            return
        with entry.lock:
            changed = pipeline != entry.pipeline
            entry.pipeline, entry.loaded_at = pipeline, self.instance.clock.now()
            entry.copy = save_copy(entry)
            said = "reloaded" if changed else "reloaded (unchanged)"
            self.report.say(entry.name, "reload", said)
            if changed and entry.leader and entry.child is None:
                # decided anew under the new file: resume() would give back the
                # decision stored under the old one (its cadence, its next start)
                from planner.service.scheduling import decide_after

                runs = self.instance.store.list_runs(entry.name, limit=1)
                nxt = decide_after(
                    self.instance,
                    pipeline,
                    runs[0] if runs else None,
                    now=self.instance.clock.now(),
                    misfire_grace_s=self.settings.misfire_grace_s,
                )
                self._decide(entry, nxt)

    def stop(self) -> None:
        """Start nothing more (running runs go on)."""
        self._stopping.set()

    def leave(self) -> None:
        """Stop waiting for children (they go on under their own leases)."""
        self._stopping.set()
        self._leaving.set()
        if self._training is not None:
            interrupt(self._training)

    def running(self) -> dict[str, str]:
        """``{pipeline: run id}`` of the runs this daemon waits for."""
        return {e.name: e.run_id or "?" for e in self.entries.values() if e.child is not None}

    def release(self) -> None:
        """Give up every leadership (another daemon may take the pipelines at once)."""
        for entry in self.entries.values():
            if entry.leader:
                try:
                    self.instance.store.release_leader(entry.name, self.owner.owner_id)
                except Exception as exc:
                    self.report.say(entry.name, "error", f"could not release: {one_line(exc)}")
                entry.leader = False
                self.report.say(entry.name, "leader", "released its leadership")

    def close(self) -> None:
        """Deliver the alerts still held, then stop their threads."""
        self.report.close()
