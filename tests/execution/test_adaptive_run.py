"""``concurrency: {max: adaptive}`` in real runs: ``planner run`` processes, tasks that call
a local HTTP service which serves a few requests at once, the history they leave."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from planner.config.loader import load_pipeline
from planner.errors import ConfigError

CLIENT = (
    "import sys, urllib.request\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    urllib.request.urlopen(sys.argv[1], timeout=60).read()\n"
)


@pytest.fixture
def service() -> Iterator[str]:
    """A service on 127.0.0.1 that works on 4 requests at once, 0.3 s each."""
    slots = threading.Semaphore(4)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with slots:
                time.sleep(0.3)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _pipeline(tmp_path: Path, url: str, concurrency: str, tasks: int = 24) -> Path:
    client = tmp_path / "client.py"
    client.write_text(CLIENT)
    accounts = "\n".join(f"  - a{i:02d}" for i in range(tasks))
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: fetch\nstate_dir: {tmp_path / 'state'}\n{concurrency}\n"
        f"accounts:\n{accounts}\nsteps:\n  - id: get\n    per_account: true\n"
        f"    command: {json.dumps([sys.executable, str(client), url, '2'])}\n"
    )
    return path


def _planner(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLANNER_DB": f"sqlite:///{tmp_path / 'history.db'}"}
    return subprocess.run(
        [sys.executable, "-m", "planner", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _show(tmp_path: Path) -> dict[str, Any]:
    runs = json.loads(_planner(tmp_path, "runs", "--json").stdout)["runs"]
    shown = _planner(tmp_path, "show", runs[0]["run_id"], "--json")
    return dict(json.loads(shown.stdout))


def test_an_adaptive_run_grows_past_auto_and_records_every_change(
    tmp_path: Path, service: str
) -> None:
    path = _pipeline(tmp_path, service, "concurrency:\n  max: adaptive\n  ceiling: 8")
    done = _planner(tmp_path, "run", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "concurrency limit " in done.stdout  # shown live, one line per change
    document = _show(tmp_path)
    run, attempts = document["run"], document["attempts"]
    changes = run["limit_changes"]
    first = changes[0]
    assert (first["from"], first["reason"]) == (None, "start")
    assert first["to"] == run["concurrency"]  # the run's concurrency is where it started
    assert len(changes) >= 2, changes
    for before, after in itertools.pairwise(changes):
        assert after["from"] == before["to"] and after["reason"]
        assert after["at"] >= before["at"]
    limits = [c["to"] for c in changes]
    assert max(limits) > first["to"] and max(limits) <= 8  # grew, within the ceiling
    assert {a["status"] for a in attempts} == {"succeeded"}
    # every attempt records the limit in effect when it started
    frame_concurrency = {row["concurrency"] for row in _attempt_rows(tmp_path)}
    assert frame_concurrency <= set(limits) and len(frame_concurrency) >= 2
    text = _planner(tmp_path, "show", run["run_id"]).stdout
    assert "concurrency limit: " + " -> ".join(map(str, limits)) in text


def test_a_fixed_run_has_one_limit_entry(tmp_path: Path, service: str) -> None:
    path = _pipeline(tmp_path, service, "concurrency:\n  max: 3", tasks=4)
    assert _planner(tmp_path, "run", str(path)).returncode == 0
    changes = _show(tmp_path)["run"]["limit_changes"]
    assert [(c["from"], c["to"], c["reason"]) for c in changes] == [(None, 3, "start")]


def test_an_explicit_concurrency_makes_an_adaptive_pipeline_fixed(
    tmp_path: Path, service: str
) -> None:
    path = _pipeline(tmp_path, service, "concurrency:\n  max: adaptive", tasks=8)
    assert _planner(tmp_path, "run", str(path), "--concurrency", "2").returncode == 0
    changes = _show(tmp_path)["run"]["limit_changes"]
    assert [(c["to"], c["reason"]) for c in changes] == [(2, "start")]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("max: 4\n  min: 2", "min only apply to max: adaptive"),
        ("max: adaptive\n  min: 5\n  ceiling: 3", "min 5 is above ceiling 3"),
        ("max: adaptive\n  ceiling: 0", "greater than or equal to 1"),
        ("max: elastic", "adaptive"),
    ],
)
def test_bad_adaptive_settings_are_refused(tmp_path: Path, block: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"name: x\nconcurrency:\n  {block}\nsteps:\n  - id: a\n    command: [true]\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert message in str(caught.value)


def _attempt_rows(tmp_path: Path) -> list[dict[str, Any]]:
    from planner.history import HistoryStore

    with HistoryStore(f"sqlite:///{tmp_path / 'history.db'}") as store:
        frame = store.attempts_frame("fetch")
    return [{"concurrency": int(c)} for c in frame["concurrency"]]


def test_memory_at_the_threshold_halves_a_running_limit_down_to_min(
    make_pipeline: Any, tmp_path: Path
) -> None:
    """A real run whose load probe says memory is past the threshold: 8 -> 4 -> 2, never
    below ``min``, each change stored with its reason; every task still runs."""
    from planner.execution import (
        AdaptiveBounds,
        FixedLoadProbe,
        FixedMemoryProbe,
        LoadReading,
        RunDirectives,
        Runner,
        RunRequest,
    )
    from planner.history import HistoryStore

    pipeline = make_pipeline(
        accounts=[f"a{i}" for i in range(12)],
        concurrency={"max": "adaptive", "min": 2},
        memory_pressure={"threshold": 0.7},
        steps=[{"id": "s", "per_account": True, "command": ["sleep", "0.3"]}],
    )
    probe = FixedLoadProbe(LoadReading(memory_used=0.75, memory_total_mb=1000.0))
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
        # the pressure gate reads memory on its own probe: low, so it never pauses here
        runner = Runner(
            pipeline, store, RunRequest(), load_probe=probe, memory_probe=FixedMemoryProbe(0.1)
        )
        bounds = AdaptiveBounds(start=8, min=2, ceiling=16)
        result = runner.run(directives=RunDirectives(adaptive=bounds))
        changes = store.limit_changes(result.run_id)
        attempts = store.attempts_for_run(result.run_id)
    assert result.status == "succeeded" and len(attempts) == 12
    assert [(c["from"], c["to"]) for c in changes] == [(None, 8), (8, 4), (4, 2)]
    assert all("memory 75% in use" in c["reason"] for c in changes[1:])
    assert changes[0]["detail"] == {"mode": "adaptive", "min": 2, "ceiling": 16}
    assert probe.readings >= 3


def test_the_live_watcher_follows_each_limit_change(make_pipeline: Any, tmp_path: Path) -> None:
    """The monitor of a run (ETA, alerts) schedules what is left on the current limit."""
    from planner.execution import LimitChanged, RunStarted
    from planner.history import HistoryStore
    from planner.monitoring.delivery import AlertDispatcher
    from planner.service import Instance
    from planner.service.monitor import RunMonitor
    from planner.service.planning import PlanRequest, make_plan

    pipeline = make_pipeline(
        accounts=["a", "b"],
        concurrency={"max": "adaptive"},
        steps=[{"id": "s", "per_account": True, "command": ["true"]}],
    )
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
        instance = Instance(store, tmp_path / "models")
        plan = make_plan(instance, pipeline, PlanRequest())
        assert plan.adaptive_range is not None and plan.adaptive_range[0] == 1
        low, top = plan.adaptive_range
        assert top >= 16  # 8 per core, at least 16 (no memory figure yet: no memory fit)
        assert plan.concurrency_rule.startswith(
            f"adaptive: starts at {plan.concurrency}, then follows what the run measures, "
            f"{low} to {top}; the start is auto: "
        )
        dispatcher = AlertDispatcher(pipeline, store)
        monitor = RunMonitor(instance, pipeline, plan, dispatcher, tick_s=3600)
        try:
            monitor.on_event(RunStarted("r", {"s": 2}, 1))
            assert monitor.watcher is not None and monitor.watcher.slots == 1
            monitor.on_event(LimitChanged(1, 4, "it paid"))
            assert monitor.watcher.slots == 4
        finally:
            monitor.close()
            dispatcher.close(timeout_s=1)
