"""A run that goes long is reported while it runs: one account suddenly takes 12x longer,
and its warning and critical alerts reach a real webhook before the run ends."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from planner.cli import main
from planner.history import HistoryStore

JOB = """\
import json, sys, time
from pathlib import Path
time.sleep(json.loads(Path(sys.argv[1]).read_text()).get(sys.argv[2], 0.3))
"""
ACCOUNTS = [f"a{i}" for i in range(6)]


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[float, dict[str, Any]]]]]:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body with its arrival time."""
    received: list[tuple[float, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((time.time(), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _pipeline(tmp_path: Path, url: str, durations: dict[str, float]) -> Path:
    (tmp_path / "job.py").write_text(JOB, encoding="utf-8")
    (tmp_path / "durations.json").write_text(json.dumps(durations), encoding="utf-8")
    raw = {
        "name": "watched",
        "accounts": ACCOUNTS,
        "state_dir": str(tmp_path / "state"),
        "concurrency": {"max": 6},
        "alerts": {"sinks": [{"kind": "webhook", "url": url}]},
        "steps": [
            {
                "id": "sync",
                "command": [sys.executable, "job.py", "durations.json", "{account}"],
                "per_account": True,
            }
        ],
    }
    path = tmp_path / "watched.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_one_account_12x_longer_alerts_while_the_run_goes_on(
    tmp_path: Path,
    webhook: tuple[str, list[tuple[float, dict[str, Any]]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, received = webhook
    normal = dict.fromkeys(ACCOUNTS, 0.3)
    path = _pipeline(tmp_path, url, normal)
    for _ in range(5):
        assert main(["run", str(path), "--quiet"]) == 0
    received.clear()  # what the normal runs sent (nothing late: at most notes)
    capsys.readouterr()
    _pipeline(tmp_path, url, {**normal, "a5": 3.6})  # 12x for one account
    assert main(["run", str(path), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    from datetime import datetime

    finished = datetime.fromisoformat(run["finished_at"]).timestamp()
    late = [(t, body) for t, body in received if body["account"] == "a5"]
    kinds = {(body["level"], body["kind"]) for _, body in late}
    assert ("warning", "task_late") in kinds and ("critical", "task_late") in kinds
    assert all(t < finished for t, body in late if body["kind"] == "task_late")  # while running
    assert all(body["run_id"] == run["run_id"] for _, body in late)
    for _, body in late:
        assert set(body) >= {"level", "kind", "pipeline", "run_id", "step", "account",
                             "elapsed_s", "predicted_s", "bound_s", "eta", "text"}  # fmt: skip
    critical_others = [
        body for _, body in received
        if body["level"] == "critical" and body["account"] not in (None, "a5")
    ]  # fmt: skip
    assert critical_others == []  # the accounts that ran as predicted
    with HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}") as store:
        stored = store.alerts(pipeline="watched", run_id=run["run_id"])
    assert {(a.level, a.kind, a.account) for a in stored} >= {
        ("warning", "task_late", "a5"),
        ("critical", "task_late", "a5"),
    }
    assert all(d.status == "sent" for a in stored for d in a.deliveries if "webhook" in d.sink)
    assert not any(body["kind"] == "run_collision" for _, body in received)  # no schedule
    with HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}") as store:
        drift = [a for a in store.alerts(pipeline="watched") if a.kind == "model_drift"]
    assert len(drift) <= 1  # said once in a window of runs, not after every run
