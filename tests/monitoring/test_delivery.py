"""The dispatcher: alerts stored at once, delivered in the background, retried, bounded."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planner.clock import FakeClock
from planner.history import AlertRecord, HistoryStore
from planner.monitoring import (
    Alert,
    AlertDispatcher,
    CommandSink,
    DeliveryError,
    LogSink,
    Sink,
    backoff_s,
)

from .conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    HttpHook,
    Mailbox,
    make_alert,
    make_pipeline,
    wait_for,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"  # the test SMTP server
)


class FlakySink(Sink):
    """Fails its first ``failures`` sends; records what it got and when (its clock)."""

    kind = "flaky"

    def __init__(self, failures: int, clock: FakeClock | None = None, label: str = "flaky") -> None:
        super().__init__(label=label)
        self.failures = failures
        self.clock = clock
        self.tries: list[float] = []
        self.got: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.tries.append(self.clock.monotonic() if self.clock else time.monotonic())
        if len(self.tries) <= self.failures:
            raise DeliveryError(self.label, f"down (try {len(self.tries)})")
        self.got.append(alert)


class BuggySink(Sink):
    kind = "buggy"

    def send(self, alert: Alert) -> None:
        raise RuntimeError("a bug\nover two lines")


def _deliveries(store: HistoryStore) -> dict[str, tuple[str, int, str | None]]:
    return {
        f"{a.alert_id}:{d.sink}": (d.status, d.attempts, d.last_error)
        for a in store.alerts()
        for d in a.deliveries
    }


def _delivery(store: HistoryStore, sink: str, index: int = 0) -> tuple[str, int, str | None]:
    record: AlertRecord = store.alerts()[index]
    (row,) = [d for d in record.deliveries if d.sink == sink]
    return row.status, row.attempts, row.last_error


def test_backoff_doubles_from_1s_up_to_60s() -> None:
    assert [backoff_s(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(10_000) == 60


def test_a_webhook_down_then_back_gets_the_alert_and_the_history_says_sent(
    tmp_path: Path, sqlite_store: HistoryStore, down_hook: HttpHook
) -> None:
    pipeline = make_pipeline(tmp_path, sinks=[{"kind": "webhook", "url": down_hook.url}])
    label = f"webhook {down_hook.url}"
    with AlertDispatcher(pipeline, sqlite_store) as dispatcher:
        started = time.monotonic()
        alert_id = dispatcher.post(make_alert())
        assert time.monotonic() - started < 0.5  # post does not wait for the sink
        (record,) = sqlite_store.alerts("etl")  # in the history at once
        assert record.alert_id == alert_id and record.text == make_alert().text
        assert {d.sink for d in record.deliveries} == {label, f"log {tmp_path}/state/alerts.log"}
        assert wait_for(lambda: _delivery(sqlite_store, label)[1] >= 1)
        status, attempts, error = _delivery(sqlite_store, label)
        assert status == "failed" and error is not None and "refused" in error
        down_hook.start()  # the sink comes back: the next try (after 1 s) gets through
        assert wait_for(lambda: _delivery(sqlite_store, label)[0] == "sent", 15)
    status, attempts, error = _delivery(sqlite_store, label)
    assert attempts >= 2 and error is None
    (request,) = down_hook.requests
    assert json.loads(request.body) == make_alert().body()
    (row,) = [d for d in sqlite_store.alerts()[0].deliveries if d.sink == label]
    assert row.sent_at is not None
    log_line = (tmp_path / "state" / "alerts.log").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in log_line] == ["task_late"]


def test_close_returns_within_its_bound_when_a_sink_hangs(
    tmp_path: Path, sqlite_store: HistoryStore
) -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        pipeline = make_pipeline(tmp_path, sinks=[{"kind": "webhook", "url": url}])
        dispatcher = AlertDispatcher(pipeline, sqlite_store)
        dispatcher.post(make_alert())
        dispatcher.post(make_alert(level="critical"))
        log = f"log {tmp_path}/state/alerts.log"
        deadline = time.monotonic() + 20  # both logs first (a loaded machine: not 0.3 s)
        while any(_delivery(sqlite_store, log, i)[0] != "sent" for i in (0, 1)):
            assert time.monotonic() < deadline, "the log sink never got both alerts"
            time.sleep(0.02)
        time.sleep(0.3)  # the thread is inside the first POST now
        started = time.monotonic()
        report = dispatcher.close(timeout_s=1.0)
        assert time.monotonic() - started < 3.0  # 1 s (loaded machine), not the 5 s timeout
    assert report.sent == 2  # the log sink
    assert (report.failed, report.pending) == (1, 1) and not report.complete
    assert report.errors == (
        f"webhook {url}: no answer before the end (sending)",
        f"webhook {url}: not tried before the end",
    )
    assert _delivery(sqlite_store, f"webhook {url}", 0)[0] == "failed"
    assert _delivery(sqlite_store, f"webhook {url}", 1)[:2] == ("pending", 0)


def test_what_a_run_could_not_deliver_the_next_one_sends(
    tmp_path: Path, sqlite_store: HistoryStore, down_hook: HttpHook
) -> None:
    pipeline = make_pipeline(tmp_path, sinks=[{"kind": "webhook", "url": down_hook.url}])
    label = f"webhook {down_hook.url}"
    first = AlertDispatcher(pipeline, sqlite_store)
    first.post(make_alert())
    assert wait_for(lambda: _delivery(sqlite_store, label)[1] == 1)
    report = first.close(timeout_s=0.2)
    assert (report.failed, report.pending) == (1, 0)
    assert report.errors[0].startswith(f"{label}: ") and report.errors[0].endswith("(1 try)")
    assert first.post(make_alert(text="after close")) > 0  # stored, left for a retry
    down_hook.start()
    with AlertDispatcher(pipeline, sqlite_store) as second:
        assert second.retry_pending() == 3  # 2 webhook + the log line of the late one
        assert second.retry_pending() == 0  # queued already
        assert wait_for(lambda: not sqlite_store.pending_deliveries("etl"))
    assert [json.loads(r.body)["text"] for r in down_hook.requests] == [
        make_alert().text,
        "after close",
    ]
    assert _delivery(sqlite_store, label, 0)[:2] == ("sent", 2)


def test_min_level_and_order_per_sink(tmp_path: Path, sqlite_store: HistoryStore) -> None:
    flaky = FlakySink(failures=2)
    critical_only = FlakySink(failures=0, label="pager")
    critical_only.min_level = "critical"
    pipeline = make_pipeline(tmp_path)
    with AlertDispatcher(pipeline, sqlite_store, sinks=[flaky, critical_only]) as dispatcher:
        texts = [f"alert {i}" for i in range(4)]
        for i, text in enumerate(texts):
            dispatcher.post(make_alert(text=text, level="critical" if i % 2 else "warning"))
        dispatcher.post(make_alert(level="info", text="fyi"))
        assert wait_for(lambda: len(flaky.got) == 4, 15)
    assert [a.text for a in flaky.got] == texts  # in order, though the first tries failed
    assert [a.text for a in critical_only.got] == ["alert 1", "alert 3"]
    info = sqlite_store.alerts()[-1]
    assert info.text == "fyi" and info.deliveries == ()  # stored, sent nowhere


def test_retries_wait_1_2_4_seconds_on_the_clock(
    tmp_path: Path, sqlite_store: HistoryStore
) -> None:
    clock = FakeClock()
    flaky = FlakySink(failures=3, clock=clock)
    dispatcher = AlertDispatcher(make_pipeline(tmp_path), sqlite_store, clock=clock, sinks=[flaky])
    dispatcher.post(make_alert())

    def tried(n: int) -> None:  # n tries made, and the n-th failure recorded
        assert wait_for(lambda: len(flaky.tries) == n)
        if n <= flaky.failures:
            assert wait_for(lambda: _delivery(sqlite_store, "flaky")[1] == n)
        time.sleep(0.2)  # (the backoff is set just after the record)

    tried(1)
    time.sleep(0.6)
    assert len(flaky.tries) == 1  # the clock has not moved: no retry yet
    for step, tries in ((1.0, 2), (1.9, 2), (0.1, 3), (4.0, 4)):
        clock.advance(step)
        if tries > len(flaky.tries):
            tried(tries)
        else:
            time.sleep(0.6)
            assert len(flaky.tries) == tries
    assert flaky.tries == [0.0, 1.0, 3.0, 7.0]
    assert dispatcher.close(timeout_s=2).complete
    assert _delivery(sqlite_store, "flaky") == ("sent", 4, None)


def test_a_buggy_sink_is_recorded_and_the_others_go_on(
    tmp_path: Path, sqlite_store: HistoryStore
) -> None:
    buggy, good = BuggySink(label="buggy"), FlakySink(failures=0, label="good")
    with AlertDispatcher(make_pipeline(tmp_path), sqlite_store, sinks=[buggy, good]) as d:
        d.post(make_alert())
        assert wait_for(lambda: _delivery(sqlite_store, "buggy")[1] >= 1)
        assert wait_for(lambda: len(good.got) == 1)
    assert _delivery(sqlite_store, "buggy")[2] == "RuntimeError: a bug over two lines"


def test_post_is_cheap_while_a_sink_hangs(tmp_path: Path, sqlite_store: HistoryStore) -> None:
    slow = CommandSink(["sleep", "5"], timeout_s=5, label="slow")
    dispatcher = AlertDispatcher(make_pipeline(tmp_path), sqlite_store, sinks=[slow])
    started = time.monotonic()
    ids = [dispatcher.post(make_alert(text=f"a{i}")) for i in range(20)]
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed  # 20 history writes, no sink waited for
    assert len(set(ids)) == 20 and len(sqlite_store.alerts()) == 20
    started = time.monotonic()
    report = dispatcher.close(timeout_s=0.5)
    assert time.monotonic() - started < 1.5
    assert report.pending == 19 and report.failed == 1


def test_sink_labels_must_be_unique(tmp_path: Path, sqlite_store: HistoryStore) -> None:
    with pytest.raises(ValueError, match="unique"):
        AlertDispatcher(
            make_pipeline(tmp_path),
            sqlite_store,
            sinks=[LogSink(tmp_path / "a"), LogSink(tmp_path / "a")],
        )


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PLANNER_TEST_SMTP_PASSWORD", "wrong-" + SMTP_PASSWORD)
    yield


def test_no_password_or_token_reaches_the_history_or_the_log(
    tmp_path: Path,
    sqlite_store: HistoryStore,
    smtp_server: Mailbox,
    http_hook: HttpHook,
    secret_env: None,
) -> None:
    token = "xoxb-s3cr3t-t0ken"
    http_hook.status, http_hook.reason = 401, f"bad token {token}"
    pipeline = make_pipeline(
        tmp_path,
        sinks=[
            {"kind": "log", "path": "alerts.jsonl"},
            {
                "kind": "webhook",
                "url": http_hook.url,
                "headers": {"Authorization": f"Bearer {token}"},
            },
            {
                "kind": "email",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "username": SMTP_USER,
                "password_env": "PLANNER_TEST_SMTP_PASSWORD",
                "from": "planner@example.org",
                "to": ["ops@example.org"],
            },
        ],
    )
    with AlertDispatcher(pipeline, sqlite_store) as dispatcher:
        dispatcher.post(make_alert(level="critical"))
        assert wait_for(
            lambda: all(d.attempts >= 1 for d in sqlite_store.alerts()[0].deliveries), 15
        )
        report = dispatcher.close(timeout_s=0.5)
    assert report.sent == 1 and report.failed == 2
    errors = {d.sink.split()[0]: d.last_error for d in sqlite_store.alerts()[0].deliveries}
    assert errors["webhook"] == "HTTP 401 bad token ***"
    assert errors["email"] is not None and errors["email"].startswith("SMTP 535")
    assert "***" in errors["email"]
    stored = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("history.db*"))
    log_text = (tmp_path / "alerts.jsonl").read_text()  # relative: beside the pipeline file
    for secret in (SMTP_PASSWORD, token):
        assert secret.encode() not in stored
        assert secret not in log_text
        assert all(secret not in line for line in report.errors)


def test_an_email_alert_through_the_dispatcher(
    tmp_path: Path,
    sqlite_store: HistoryStore,
    smtp_server: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
    pipeline = make_pipeline(
        tmp_path,
        sinks=[
            {
                "kind": "email",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "username": SMTP_USER,
                "password_env": "SMTP_PW",
                "from": "planner@example.org",
                "to": "ops@example.org",
                "min_level": "critical",
            }
        ],
    )
    with AlertDispatcher(pipeline, sqlite_store) as dispatcher:
        dispatcher.post(make_alert())  # a warning: not for this sink
        dispatcher.post(make_alert(level="critical", text="run r1 is late"))
        assert smtp_server.got.wait(10)
    (envelope,) = smtp_server.messages
    assert b"Subject: [planner] CRITICAL etl: run r1 is late" in envelope.original_content


def test_a_command_sink_through_the_dispatcher(tmp_path: Path, sqlite_store: HistoryStore) -> None:
    out = tmp_path / "alerts.out"
    code = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"
    pipeline = make_pipeline(
        tmp_path, sinks=[{"kind": "command", "command": [sys.executable, "-c", code, str(out)]}]
    )
    with AlertDispatcher(pipeline, sqlite_store) as dispatcher:
        dispatcher.post(make_alert())
        dispatcher.post(make_alert(level="critical"))
    report_lines = out.read_text().splitlines()
    assert [json.loads(line)["level"] for line in report_lines] == ["warning", "critical"]
    assert all(d.status == "sent" for a in sqlite_store.alerts() for d in a.deliveries)


def test_posting_from_many_threads(tmp_path: Path, sqlite_store: HistoryStore) -> None:
    sink = FlakySink(failures=0)
    with AlertDispatcher(make_pipeline(tmp_path), sqlite_store, sinks=[sink]) as dispatcher:
        threads = [
            threading.Thread(
                target=lambda n=n: [dispatcher.post(make_alert(text=f"{n}-{i}")) for i in range(10)]
            )
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(sink.got) == 40 and len(sqlite_store.alerts()) == 40
    assert not sqlite_store.pending_deliveries()
