"""The dashboard's JSON API, metrics and live events, through a real uvicorn server on
127.0.0.1 (test_auth.py uses Starlette's TestClient too), on a history made by real
runs (tests/dashboard_history.py). Where the command line prints the same document with
``--json``, the API's is equal to it."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from planner.monitoring.metrics import serve_metrics
from planner.service.dashboard import alerts_page, model_quality, pipeline_history
from planner.web.server import DashboardServer, serve_dashboard  # uvicorn: when serving
from tests.conftest import IN_CI
from tests.dashboard_history import DashboardHistory, sleepy_pipeline
from tests.web.client import fetch, planner_json

for _module in ("starlette", "uvicorn"):  # locally a skip that says why; in CI a failure
    if importlib.util.find_spec(_module) is None and not IN_CI:
        pytest.skip(f"{_module} is missing: pip install -e '.[web]'", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
FRONT_ENDS = ("planner.commands", "planner.display", "planner.daemon", "planner.analysis")


@pytest.fixture(scope="module")
def server(dashboard_history: DashboardHistory) -> Iterator[DashboardServer]:
    with serve_dashboard(
        dashboard_history.url, "127.0.0.1", 0, models_dir=dashboard_history.models
    ) as running:
        yield running


def _get(server: DashboardServer, path: str) -> Any:
    answer = fetch(server.url + path.lstrip("/"))
    assert answer.status == 200, (path, answer.status, answer.text)
    assert answer.headers["content-type"] == "application/json"
    return answer.json()


def test_every_endpoint_answers(
    server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    run_id = dashboard_history.tiny_runs[0]
    for path in (
        "api/pipelines",
        "api/pipelines/tiny",
        "api/pipelines/tiny/history",
        "api/pipelines/tiny/quality",
        f"api/runs/{run_id}",
        "api/alerts",
        "api/alerts?pipeline=tiny&limit=1",
    ):
        assert isinstance(_get(server, path), dict)
    health = fetch(server.url + "healthz")
    assert (health.status, health.text) == (200, "ok")
    assert health.headers["x-content-type-options"] == "nosniff"
    scrape = fetch(server.url + "metrics")
    assert scrape.status == 200 and scrape.headers["content-type"].startswith("text/plain")


def test_the_pipelines_are_planner_status(
    server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    status = planner_json("status", "--db", dashboard_history.url)
    document = _get(server, "api/pipelines")
    assert document["history"] == status["history"]
    assert len(document["pipelines"]) == len(status["pipelines"]) == 2
    for row, expected in zip(document["pipelines"], status["pipelines"], strict=True):
        assert {key: row[key] for key in expected} == expected
        assert {"progress", "last_run_fit", "alerts"} <= set(row)
    one = _get(server, "api/pipelines/tiny")
    assert one["pipeline"] == document["pipelines"][1]
    runs = planner_json(
        "runs", "--db", dashboard_history.url, "--pipeline", "tiny", "--limit", "10"
    )
    assert one["runs"] == runs["runs"][:10]


def test_a_run_is_planner_show(
    server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    for run_id in dashboard_history.tiny_runs:
        shown = planner_json("show", run_id, "--db", dashboard_history.url)
        document = _get(server, f"api/runs/{run_id}")
        assert document["run"] == shown["run"] and document["attempts"] == shown["attempts"]
        assert len(document["timeline"]["rows"]) == len(shown["attempts"])
    first = _get(server, f"api/runs/{dashboard_history.tiny_runs[0]}")
    (failed,) = [r for r in first["timeline"]["rows"] if r["status"] == "failed"]
    assert "boom a2" in failed["stderr_tail"]


def test_history_quality_and_alerts_are_the_service_documents(
    server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    history = _get(server, "api/pipelines/tiny/history?limit=3")
    runs = planner_json("runs", "--db", dashboard_history.url, "--pipeline", "tiny", "--limit", "3")
    assert history["runs"] == runs["runs"]
    with dashboard_history.instance() as instance:
        now = datetime.now(UTC)
        expected = pipeline_history(instance, "tiny", now, limit=3)
        quality = model_quality(instance, "tiny", now)
        alerts = alerts_page(instance, now)
    assert {k: v for k, v in history.items() if k != "now"} == {
        k: v for k, v in expected.items() if k != "now"
    }
    got = _get(server, "api/pipelines/tiny/quality")
    assert {k: v for k, v in got.items() if k != "now"} == json.loads(
        json.dumps({k: v for k, v in quality.items() if k != "now"}, default=str)
    )
    assert got["model"]["id"] == dashboard_history.model_id
    listed = _get(server, "api/alerts")
    assert listed["alerts"] == alerts["alerts"] and listed["counts"] == alerts["counts"]
    assert [a["kind"] for a in _get(server, "api/alerts?limit=1")["alerts"]] == ["run_late"]


def test_unknown_names_are_404_and_bad_queries_400(server: DashboardServer) -> None:
    for path in (
        "api/runs/no-such-run",
        "api/pipelines/nope",
        "api/pipelines/nope/history",
        "api/pipelines/nope/quality",
        "api/nothing-here",
    ):
        assert fetch(server.url + path).status == 404, path
    for path in ("api/pipelines/tiny/history?limit=x", "api/alerts?limit=0"):
        answer = fetch(server.url + path)
        assert answer.status == 400 and "error" in answer.json(), path


def test_nothing_but_get(server: DashboardServer, dashboard_history: DashboardHistory) -> None:
    """Read-only: no route takes a write (405), and every route of the app is GET only."""
    for path in ("api/pipelines", f"api/runs/{dashboard_history.tiny_runs[0]}", "metrics"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            answer = fetch(server.url + path, data=b"{}", method=method)
            assert answer.status == 405, (path, method)
    from starlette.routing import Mount, Route

    for route in server.app.routes:
        if isinstance(route, Route):
            assert route.methods is not None and route.methods <= {"GET", "HEAD"}, route.path
        else:
            assert isinstance(route, Mount), route


def test_metrics_are_the_daemons_families(
    server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    ours = {f.name: f for f in text_string_to_metric_families(fetch(server.url + "metrics").text)}
    with (
        dashboard_history.instance() as instance,
        serve_metrics(instance.store, "127.0.0.1", 0) as daemons,
    ):
        names = {f.name for f in text_string_to_metric_families(fetch(daemons.url).text)}
    assert set(ours) == names and "planner_runs" in ours
    runs = {
        (s.labels["pipeline"], s.labels["status"]): s.value for s in ours["planner_runs"].samples
    }
    assert runs[("tiny", "succeeded")] == len(dashboard_history.tiny_runs)
    assert runs[("other", "succeeded")] == 1
    alerts = {s.labels["level"]: s.value for s in ours["planner_alerts"].samples}
    assert alerts == {"critical": 1.0, "warning": 1.0}
    (up,) = ours["planner_history_up"].samples
    assert up.value == 1.0


def _events(answer: Any, wanted: int, deadline: float) -> list[tuple[str, dict[str, Any]]]:
    """Read server-sent events until ``wanted`` progress events name a running run."""
    seen: list[tuple[str, dict[str, Any]]] = []
    kind, data = "", ""
    while time.monotonic() < deadline:
        line = answer.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data += line.split(":", 1)[1].strip()
        elif line == "" and data:
            document = json.loads(data)
            seen.append((kind, document))
            kind, data = "", ""
            if sum(1 for k, d in seen if k == "progress" and d["runs"]) >= wanted:
                break
    return seen


def test_live_progress_while_a_real_run_runs(tmp_path: Path) -> None:
    import urllib.request

    pipeline = sleepy_pipeline(tmp_path, tasks=3, seconds=1.5)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    command = [sys.executable, "-m", "planner", "run", str(pipeline), "--db", url, "--quiet"]
    with (
        serve_dashboard(url, "127.0.0.1", 0, live_interval_s=0.5) as web,
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as run,
    ):
        try:
            with urllib.request.urlopen(web.url + "api/events", timeout=30) as answer:
                assert answer.headers["content-type"].startswith("text/event-stream")
                seen = _events(answer, 2, time.monotonic() + 30)
        finally:
            _out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        after = fetch(web.url + "api/pipelines").json()
    live = [d for k, d in seen if k == "progress" and d["runs"]]
    assert len(live) >= 2, seen
    for document in live:
        (row,) = document["runs"]
        assert row["pipeline"] == "sleepy" and row["state"] in ("running", "starting")
    running = [d["runs"][0] for d in live if d["runs"][0]["state"] == "running"]
    assert running, live
    progress = running[-1]["progress"]
    assert progress["tasks"]["total"] == 3 and progress["status"] == "running"
    assert 0 <= progress["percent"] <= 99.9
    assert [k for k, _ in seen] == ["progress"] * len(seen)
    assert after["pipelines"][0]["state"] == "idle"


def test_a_stream_ends_when_the_server_stops(dashboard_history: DashboardHistory) -> None:
    import urllib.request

    web = serve_dashboard(dashboard_history.url, "127.0.0.1", 0, live_interval_s=0.2)
    with urllib.request.urlopen(web.url + "api/events", timeout=10) as answer:
        first = answer.readline()
        assert first.startswith(b"retry:")
        started = time.monotonic()
        web.close()  # with the client still reading
        assert time.monotonic() - started < 5 and not web.running
        rest = answer.read()  # the stream ended: what was left, then EOF (no timeout)
    assert (first + rest).endswith(b"\n\n")  # whole events only


def test_the_web_imports_no_other_front_end() -> None:
    """Neither at import time (a real process) nor anywhere in its source (lazy imports)."""
    code = (
        "import sys\n"
        "import planner.web, planner.web.app, planner.web.auth, planner.web.server\n"
        "import planner.web.pages, planner.web.context\n"
        "planner.web.app.create_app('sqlite://')\n"
        f"bad = [m for m in sys.modules if m.startswith({FRONT_ENDS!r}) or m == 'planner.cli']\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    for path in sorted((REPO / "planner" / "web").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FRONT_ENDS) and name != "planner.cli", (path, name)


def _line(process: subprocess.Popen[str], word: str, deadline: float) -> str:
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if word in line:
            return line
    raise AssertionError(f"no line with {word!r}")


def _stop(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` if it still runs, wait for it, close its pipes."""
    if process.poll() is None:
        process.kill()
    process.communicate()


def _url(line: str) -> str:
    return next(part for part in line.split() if part.startswith("http://")).rstrip(";,")


def test_planner_dashboard_serves_until_sigint(dashboard_history: DashboardHistory) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "dashboard", "--db", dashboard_history.url,
         "--models", str(dashboard_history.models), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = _line(process, "dashboard: http://127.0.0.1:", time.monotonic() + 30)
        url = _url(line)
        assert fetch(url + "api/pipelines").json()["history"] == dashboard_history.url
        assert "no token" in line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        _stop(process)


def test_the_daemon_serves_the_dashboard_for_its_lifetime(tmp_path: Path) -> None:
    pipeline = sleepy_pipeline(tmp_path, tasks=1, seconds=0.2)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "daemon", str(pipeline), "--db", url,
         "--dashboard", "127.0.0.1:0", "--retrain", "off", "--grace", "2s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PLANNER_DASHBOARD_TOKEN": ""},
    )  # fmt: skip
    try:
        line = _line(process, "; dashboard http://127.0.0.1:", time.monotonic() + 30)
        web = _url(line)
        assert "sleepy" in [p["pipeline"] for p in fetch(web + "api/pipelines").json()["pipelines"]]
        assert fetch(web + "healthz").text == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        with pytest.raises(OSError):
            fetch(web + "healthz", timeout=2)
    finally:
        _stop(process)


@pytest.mark.slow
def test_the_demo_prints_the_dashboard_and_serves_it(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "planner", "demo", "--state-dir", str(state), "--runs", "1",
         "--serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        line = _line(process, "dashboard: http://127.0.0.1:", time.monotonic() + 240)
        assert f"planner dashboard --db sqlite:///{state}/history.db --models " in line
        document = fetch(_url(line) + "api/pipelines").json()
        assert [p["pipeline"] for p in document["pipelines"]] == ["demo"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        _stop(process)
