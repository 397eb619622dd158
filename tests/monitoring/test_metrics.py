"""Prometheus metrics served from a history written by real runs, fetched over real HTTP
and read back with the client's own parser."""

from __future__ import annotations

import socket
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from planner.cli import main
from planner.errors import StoreError, UsageError
from planner.history import AttemptStart, HistoryStore, LeaseOwner
from planner.monitoring.drift import prediction_quality
from planner.monitoring.metrics import DURATION_BUCKETS, serve_metrics
from planner.service.monitor import planned_vs_actual

RUNS = 3
# Fails (exit 75, class "network") the first time it ever runs, then succeeds.
FLAKY = "import pathlib, sys; m = pathlib.Path(sys.argv[1]); m.exists() or (m.touch(), exit(75))"
BROKEN = "import sys; print('boom', file=sys.stderr); sys.exit(3)"


def _pipeline(tmp_path: Path) -> Path:
    raw = {
        "name": "metered",
        "state_dir": str(tmp_path / "state"),
        "retry_policies": {
            "std": {
                "classify": {"network": {"exit_codes": [75]}, "boom": {"stderr": ["boom"]}},
                "on": {"network": {"max_retries": 1, "base": 0, "jitter": False}},
            }
        },
        "steps": [
            {"id": "good", "command": [sys.executable, "-c", "pass"]},
            {
                "id": "flaky",
                "command": [sys.executable, "-c", FLAKY, str(tmp_path / "flaky.mark")],
                "retry": "std",
            },
            {"id": "broken", "command": [sys.executable, "-c", BROKEN], "retry": "std"},
        ],
    }
    path = tmp_path / "metered.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryStore]:
    """A SQLite history of RUNS real runs (each fails: ``broken``), with one retry."""
    tmp_path = tmp_path_factory.mktemp("metrics")
    path = _pipeline(tmp_path)
    for _ in range(RUNS):
        assert main(["run", str(path), "--quiet"]) == 1
    store = HistoryStore(f"sqlite:///{tmp_path / 'state' / 'history.db'}")
    yield store
    store.close()


def _scrape(url: str) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _values(samples: list[Sample], name: str, **labels: str) -> dict[tuple[str, ...], float]:
    """Value by the labels other than ``labels`` of the samples ``name`` matching ``labels``."""
    out = {}
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            rest = tuple(f"{k}={v}" for k, v in sorted(s.labels.items()) if k not in labels)
            out[rest] = s.value
    return out


def test_metrics_of_real_runs_over_http(
    history: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    attempts = history.attempts_frame("metered")
    assert len(attempts) == 3 * RUNS + 1  # good, flaky (twice in the first run), broken
    history.record_alert(
        pipeline="metered", level="critical", kind="run_failed", at=datetime.now(UTC),
        text="metrics test",
    )  # fmt: skip
    levels = [a.level for a in history.alerts(pipeline="metered")]
    now = datetime.now(UTC)
    nine = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)
    ten = datetime(2030, 1, 2, 10, 0, 0, 500000, tzinfo=UTC)
    history.record_decision(
        "metered", "scheduled", now - timedelta(hours=1), "old", next_start=nine
    )
    history.record_decision("metered", "scheduled", now, "every hour", next_start=ten)
    history.record_decision("metered", "finished", now, "run r ended")  # no next start
    history.record_decision("unplanned", "deferred", now, "busy", next_start=nine)
    leader = LeaseOwner("daemon-1", "host-a", 4242)
    assert history.acquire_leader("metered", leader, 3600, now).acquired
    gone = LeaseOwner("daemon-2", "host-b", 4343)
    assert history.acquire_leader("stale", gone, 60, now - timedelta(hours=1)).acquired

    with serve_metrics(history, "127.0.0.1", 0) as server:
        assert server.port > 0
        families = _scrape(f"http://127.0.0.1:{server.port}/metrics")

    assert families["planner_history_up"][0].value == 1.0
    runs = families["planner_runs"]
    assert _values(runs, "planner_runs_total", pipeline="metered") == {("status=failed",): RUNS}
    assert _values(families["planner_active_runs"], "planner_active_runs") == {
        ("pipeline=metered",): 0.0
    }
    assert _values(families["planner_active_tasks"], "planner_active_tasks") == {
        ("pipeline=metered",): 0.0
    }

    task = families["planner_task_duration_seconds"]
    counts = _values(task, "planner_task_duration_seconds_count", pipeline="metered")
    assert counts == {("step=broken",): RUNS, ("step=flaky",): RUNS + 1, ("step=good",): RUNS}
    assert sum(counts.values()) == len(attempts)
    sums = _values(task, "planner_task_duration_seconds_sum", pipeline="metered")
    for step, total in sums.items():
        expected = attempts.loc[attempts["step"] == step[0].removeprefix("step="), "duration_s"]
        assert total == pytest.approx(float(expected.sum()))
    buckets = _values(task, "planner_task_duration_seconds_bucket", pipeline="metered", step="good")
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert buckets[("le=+Inf",)] == RUNS
    assert buckets[("le=60.0",)] == RUNS  # python -c pass: well under a minute

    run = families["planner_run_duration_seconds"]
    assert _values(run, "planner_run_duration_seconds_count") == {("pipeline=metered",): RUNS}

    failures = _values(families["planner_task_failures"], "planner_task_failures_total")
    assert failures == {
        ("error_class=boom", "pipeline=metered", "step=broken"): RUNS,
        ("error_class=network", "pipeline=metered", "step=flaky"): 1.0,
    }
    retries = _values(families["planner_task_retries"], "planner_task_retries_total")
    assert retries == {("pipeline=metered", "step=flaky"): 1.0}

    alerts = _values(families["planner_alerts"], "planner_alerts_total", pipeline="metered")
    assert alerts == {(f"level={level}",): float(levels.count(level)) for level in set(levels)}
    assert alerts[("level=critical",)] >= 1.0

    quality = prediction_quality(planned_vs_actual(history, "metered", 10))
    assert quality.tasks > 0  # the later runs planned good and flaky from the first
    mdape = _values(families["planner_prediction_mdape"], "planner_prediction_mdape")
    coverage = _values(families["planner_bound_coverage"], "planner_bound_coverage")
    assert mdape == {("pipeline=metered",): pytest.approx(quality.mdape)}
    assert coverage == {("pipeline=metered",): pytest.approx(quality.coverage)}

    # the scheduler: the newest decision that sets a next start (scheduled, deferred,
    # refused); the unexpired leader
    starts = _values(
        families["planner_next_start_timestamp_seconds"], "planner_next_start_timestamp_seconds"
    )
    assert starts == {
        ("pipeline=metered",): ten.timestamp(),
        ("pipeline=unplanned",): nine.timestamp(),
    }
    assert ten.timestamp() == 1893578400.5
    leaders = _values(families["planner_leader"], "planner_leader")
    assert leaders == {("host=host-a", "owner=daemon-1", "pipeline=metered"): 1.0}


def test_only_the_pipelines_asked_for(history: HistoryStore) -> None:
    with serve_metrics(history, "127.0.0.1", 0, pipelines=["elsewhere"]) as server:
        families = _scrape(server.url)
    assert _values(families["planner_runs"], "planner_runs_total") == {}
    assert _values(families["planner_active_runs"], "planner_active_runs") == {
        ("pipeline=elsewhere",): 0.0
    }
    assert families["planner_task_duration_seconds"] == []
    assert families["planner_next_start_timestamp_seconds"] == []
    assert families["planner_leader"] == []


def test_a_port_in_use_is_a_one_line_usage_error(history: HistoryStore) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError) as caught:
            serve_metrics(history, "127.0.0.1", port)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"127.0.0.1:{port}: cannot serve metrics: ")


def test_closed_server_frees_its_port(history: HistoryStore) -> None:
    server = serve_metrics(history, "127.0.0.1", 0)
    port = server.port
    server.close()
    server.close()  # idempotent
    again = serve_metrics(history, "127.0.0.1", port)  # the port is free again
    again.close()


def test_an_unreadable_history_is_reported_not_a_failed_scrape(
    history: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def away() -> None:
        raise StoreError(history.url, "database is locked")

    monkeypatch.setattr(history, "_read", away)
    with serve_metrics(history, "127.0.0.1", 0) as server:
        families = _scrape(server.url)
    assert [s.value for s in families["planner_history_up"]] == [0.0]
    assert set(families) == {"planner_history_up"}


def test_a_run_in_progress_is_active_and_not_in_the_histograms(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with HistoryStore(f"sqlite:///{tmp_path / 'live.db'}") as store:
        store.create_run(run_id="r1", pipeline="live", started_at=now, concurrency=2)
        for step in ("a", "b"):
            store.start_attempt(
                AttemptStart("r1", "live", step, None, 1, None, {}, None, 2, "h", now)
            )
        with serve_metrics(store, "127.0.0.1", 0) as server:
            families = _scrape(server.url)
    assert _values(families["planner_active_runs"], "planner_active_runs") == {
        ("pipeline=live",): 1.0
    }
    assert _values(families["planner_active_tasks"], "planner_active_tasks") == {
        ("pipeline=live",): 2.0
    }
    assert _values(families["planner_runs"], "planner_runs_total") == {
        ("pipeline=live", "status=running"): 1.0
    }
    assert families["planner_task_duration_seconds"] == []
    assert families["planner_run_duration_seconds"] == []
    assert families["planner_next_start_timestamp_seconds"] == []
    assert families["planner_leader"] == []
