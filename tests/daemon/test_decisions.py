"""The daemon's decisions, driven tick by tick on a fake clock against a real history."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import yaml

from planner.daemon.core import Daemon
from planner.daemon.entries import DaemonSettings, load_entries
from planner.daemon.logs import DecisionLogger
from planner.history import LeaseOwner
from tests.daemon.conftest import RecordingTimer, Rig

CADENCE = 2.0


def _cycle(rig: Rig, n: int) -> list[tuple[float, float]]:
    """Handle ``n`` starts; per run, its duration and the interval decided after it."""
    out = []
    for _ in range(n):
        start = rig.step()
        end = rig.clock.now()
        nxt = rig.timer.at["grow"]
        assert nxt >= end, "the next start may never come before the run's end"
        out.append(((end - start).total_seconds(), (nxt - start).total_seconds()))
    return out


def test_the_interval_stretches_when_runs_grow_and_comes_back_when_they_shrink(rig) -> None:
    # the calibrated bound forgets the jump once it is rare in the history (~14 runs here)
    durations = [1.0] * 3 + [3.0, 4.0, 5.0, 5.0, 5.0] + [1.0] * 16
    r = rig(durations)
    r.daemon.tick()
    assert r.daemon.entries["grow"].leader
    assert r.timer.at["grow"] == r.clock.now()  # never run: due now
    cycles = _cycle(r, len(durations))
    intervals = [i for _, i in cycles]
    assert intervals[1] == CADENCE  # short runs: the cadence
    grown = intervals[5:8]
    assert min(grown) > 5.0, intervals  # past the cadence, past the run itself
    after = intervals[8:]
    assert all(b <= a for a, b in itertools.pairwise(after)), intervals  # shrinks
    assert intervals[-1] == CADENCE, intervals  # back to the cadence
    scheduled = r.decisions("scheduled")
    assert len(scheduled) == len(durations) + 1
    stretched = [d for d in scheduled if "longer than the cadence" in d.reason]
    assert stretched and all(d.interval_s and d.interval_s > CADENCE for d in stretched)
    assert all(d.detail["bound_s"] > 0 for d in scheduled[1:])
    # the runs table holds exactly the runs started, none overlapping
    runs = sorted(r.store.list_runs("grow"), key=lambda x: x.started_at)
    assert len(runs) == len(durations)
    for before, after in itertools.pairwise(runs):
        assert before.finished_at is not None and after.started_at >= before.finished_at
    log = r.out.getvalue()
    assert "longer than the cadence" in log and "succeeded in 5.0s" in log


def test_a_start_due_while_another_run_is_active_is_deferred_and_alerted_once(rig) -> None:
    r = rig([1.0] * 3)
    other = LeaseOwner("by-hand", "otherhost", 4242, "manual-run")
    assert r.store.acquire_lease("grow", other, ttl_s=600, now=r.clock.now()).acquired
    r.daemon.tick()
    first = r.step()
    assert r.runs.started == [] and r.store.list_runs("grow") == []
    assert r.timer.at["grow"] == first + timedelta(seconds=CADENCE)  # looks again
    r.step()
    r.step()
    deferred = r.decisions("deferred")
    assert len(deferred) == 1 and deferred[0].run_id == "manual-run"
    alerts = [a for a in r.store.alerts("grow") if a.kind == "deferred"]
    assert len(alerts) == 1 and "manual-run" in alerts[0].text
    # the run by hand ends: the next start is decided from it, then runs
    r.store.create_run(
        run_id="manual-run", pipeline="grow", started_at=first, concurrency=1, host="otherhost"
    )
    r.store.finish_run("manual-run", "succeeded", r.clock.now())
    r.store.release_lease("grow", "by-hand")
    r.step()
    for _ in range(2):
        r.step()
    assert len(r.runs.started) >= 1
    assert [x.run_id for x in r.store.list_runs("grow")][-1] == "manual-run"


def test_a_restarted_daemon_goes_on_from_the_stored_decision(tmp_path, rig) -> None:
    r = rig([1.0] * 4, cadence="60s")
    r.daemon.tick()
    _cycle(r, 2)
    stored = r.decisions("scheduled")[-1]
    assert stored.next_start is not None
    # the daemon dies (no release); a new one starts 31 s later, after the leader expiry
    r.clock.advance(31)
    entries, _ = load_entries(
        [tmp_path / "grow.yaml"], r.clock.now(), db=r.store.url, models=tmp_path / "m"
    )
    timer = RecordingTimer()
    again = Daemon(
        r.daemon.instance,
        entries,
        owner=LeaseOwner.here(),
        launcher=r.runs,
        logger=DecisionLogger(r.out),
        settings=DaemonSettings(leader_ttl_s=30.0, retrain_cron=None),
    )
    again.timer = timer
    again.tick()
    assert again.entries["grow"].leader
    assert timer.at["grow"] == r.clock.now()  # decided on a worker, at once
    again.due("grow")
    assert timer.at["grow"] == stored.next_start  # not now, not lost
    assert len(r.runs.started) == 2  # nothing started by the takeover
    assert "took over" in r.out.getvalue()
    assert "as decided at" in r.out.getvalue().splitlines()[-1]
    again.tick()  # a second takeover: the stored reason does not grow
    newest = r.decisions("scheduled")[-1]
    assert newest.reason == stored.reason


def test_one_leader_per_pipeline_and_takeover_after_expiry(tmp_path, rig) -> None:
    r = rig([1.0] * 3)
    entries, _ = load_entries(
        [tmp_path / "grow.yaml"], r.clock.now(), db=r.store.url, models=tmp_path / "m"
    )
    second = Daemon(
        r.daemon.instance,
        entries,
        owner=LeaseOwner.here(),
        launcher=r.runs,
        logger=DecisionLogger(r.out),
        settings=DaemonSettings(leader_ttl_s=30.0, retrain_cron=None),
    )
    timer2 = RecordingTimer()
    second.timer = timer2
    r.daemon.tick()
    second.tick()
    assert r.daemon.entries["grow"].leader and not second.entries["grow"].leader
    assert "grow" not in timer2.at
    second.due("grow")  # a start that reaches a non-leader does nothing
    assert r.runs.started == []
    r.clock.advance(20)
    r.daemon.tick()  # heartbeat
    r.clock.advance(20)
    second.tick()  # 40 s after the first beat, 20 after the last: still led
    assert not second.entries["grow"].leader
    r.clock.advance(31)  # the leader stopped beating
    second.tick()
    assert second.entries["grow"].leader and "grow" in timer2.at
    r.daemon.tick()  # the old leader finds out and stops scheduling
    assert not r.daemon.entries["grow"].leader and "grow" not in r.timer.at
    leaders = r.store.leaders(["grow"])
    assert leaders["grow"].owner_id == second.owner.owner_id


def test_a_start_that_does_not_run_is_refused_alerted_and_retried_after_the_cadence(rig) -> None:
    r = rig([1.0])
    r.daemon.launcher = _ExitWithoutRun(2)  # planner run exits 2 before creating a run
    r.daemon.tick()
    at = r.step()
    assert r.store.list_runs("grow") == []
    refused = r.decisions("refused")
    assert len(refused) == 1 and "exit 2" in refused[0].reason
    assert r.timer.at["grow"] == at + timedelta(seconds=CADENCE)
    assert any(a.kind == "refused" for a in r.store.alerts("grow"))


class _ExitWithoutRun:
    def __init__(self, code: int) -> None:
        self.code = code

    def start_run(self, spec):
        from tests.daemon.conftest import FinishedChild

        return FinishedChild(self.code)

    def start_training(self, spec):
        raise OSError("no")


def test_reload_keeps_the_loaded_version_of_a_file_that_no_longer_validates(
    tmp_path: Path, rig
) -> None:
    r = rig([1.0])
    entry = r.daemon.entries["grow"]
    before, copy_text = entry.pipeline, entry.copy.read_text()
    (tmp_path / "grow.yaml").write_text("name: grow\nsteps: [oops\n")
    r.daemon.reload()
    assert entry.pipeline is before and entry.copy.read_text() == copy_text
    assert "keeping the version loaded" in r.out.getvalue()
    data = yaml.safe_load(copy_text)
    data["schedule"]["cadence"] = "5s"
    (tmp_path / "grow.yaml").write_text(yaml.safe_dump(data))
    r.daemon.reload()
    assert entry.pipeline.schedule.cadence == 5.0
    assert "5s" in entry.copy.read_text()


def test_retraining_is_logged_and_stored(rig) -> None:
    r = rig([1.0])
    r.daemon.tick()
    r.daemon.retrain()
    done = r.decisions("retrained")
    assert len(done) == 1 and done[0].detail["model_id"] == "m1"
    assert "retrained on 5 attempts" in r.out.getvalue()
