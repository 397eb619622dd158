"""The dashboard's HTML pages on a history of real runs: a plain GET holds the figures
the API gives (formatted as the command line formats them), the charts have a shape per
attempt or run, text from users' files is escaped, and nothing is loaded from elsewhere."""

from __future__ import annotations

import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

import pytest

from planner.units import format_duration
from tests.conftest import need

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from tests.dashboard_history import DashboardHistory

NS = "{http://www.w3.org/2000/svg}"


class _Texts(HTMLParser):
    """The text of every element whose class list holds ``cls``."""

    VOID = frozenset({"br", "img", "input", "link", "meta", "hr", "source", "wbr"})

    def __init__(self, cls: str) -> None:
        super().__init__()
        self.cls = cls
        self.found: list[str] = []
        self.open: list[list[Any]] = []  # [depth, parts] of the elements being read
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self.depth += 1
        classes = (dict(attrs).get("class") or "").split()
        if self.cls in classes:
            self.open.append([self.depth, []])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.open and self.open[-1][0] == self.depth:
            self.found.append(" ".join(" ".join(self.open.pop()[1]).split()))
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        for _, parts in self.open:
            parts.append(data)


def texts(html: str, cls: str) -> list[str]:
    parser = _Texts(cls)
    parser.feed(html)
    return parser.found


def need_web() -> None:
    """Skip (fail in CI) without the dashboard's dependencies."""
    for module in ("starlette", "jinja2", "httpx2"):
        found = importlib.util.find_spec(module) is not None
        need(found, f"{module} is missing: pip install -e '.[web]' (and httpx2 for the tests)")


def chart(html: str, kind: str) -> ET.Element:
    """The inline SVG chart of class ``kind`` in a page, parsed as XML."""
    match = re.search(rf'<svg [^>]*class="chart {kind}".*?</svg>', html, re.S)
    assert match, f"no {kind} chart in the page"
    return ET.fromstring(match.group(0))


def classed(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(NS + tag) if cls in (e.get("class") or "").split()]


@pytest.fixture(scope="module")
def client(dashboard_history: DashboardHistory) -> Iterator[TestClient]:
    need_web()
    from starlette.testclient import TestClient

    from planner.web.app import create_app

    with TestClient(create_app(dashboard_history.url, dashboard_history.models)) as test_client:
        yield test_client


def get(client: TestClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.text[:500]
    return response.text


def test_the_overview_shows_the_apis_figures(client: TestClient) -> None:
    doc = client.get("/api/pipelines").json()
    html = get(client, "/")
    names = [p["pipeline"] for p in doc["pipelines"]]
    assert names == ["other", "tiny"]
    durations = texts(html, "last-duration")
    assert durations == [format_duration(p["last_run"]["duration_s"]) for p in doc["pipelines"]]
    states = [re.sub(r"\s+", " ", s) for s in re.findall(r'data-state="([^"]+)"', html)]
    assert states == [p["state"] for p in doc["pipelines"]]
    tiny = doc["pipelines"][1]
    assert texts(html, "next-reason") == [f"why: {p['next_reason']}" for p in doc["pipelines"]]
    assert texts(html, "alert-count") == [str(tiny["alerts"]["open"])]
    assert tiny["last_run"]["run_id"] in html
    predicted = texts(html, "predicted")
    assert format_duration(tiny["last_run"]["predicted_s"]) in predicted
    assert texts(html, "badge").count("leading") == 1  # tiny's daemon
    assert 'href="/static/dashboard.css"' in html and 'src="/static/live.js"' in html


def test_a_run_page_draws_a_bar_per_attempt_and_shows_failures(
    client: TestClient, dashboard_history: DashboardHistory
) -> None:
    first = dashboard_history.tiny_runs[0]  # work a2 failed once, then succeeded
    doc = client.get(f"/api/runs/{first}").json()
    html = get(client, f"/runs/{first}")
    gantt = chart(html, "gantt")
    bars = [b for b in classed(gantt, "rect", "bar") if b.get("data-step")]
    assert len(bars) == len(doc["timeline"]["rows"]) == len(doc["attempts"]) == 8
    assert len([b for b in bars if "failed" in (b.get("class") or "")]) == 1
    assert len([b for b in bars if "retry" in (b.get("class") or "")]) == len(doc["retries"]) == 1
    assert len(classed(gantt, "path", "retry-link")) == 1
    assert texts(html, "stderr") == ["boom a2"]
    assert texts(html, "run-duration") == [format_duration(doc["run"]["duration_s"])]
    assert texts(html, "attempt-count") == [str(len(doc["attempts"]))]
    assert texts(html, "late-bars") == [str(doc["late"])]
    retries = texts(html, "retries")[0]
    assert "work a2 2 succeeded" in retries, retries
    assert "limit-changes" not in html  # no adaptive concurrency yet: no section


def test_a_run_whose_limit_adapted_shows_each_change(
    client: TestClient, dashboard_history: DashboardHistory
) -> None:
    from datetime import timedelta

    from planner.history import HistoryStore

    run_id = dashboard_history.other_run
    with HistoryStore(dashboard_history.url) as store:
        run = store.get_run(run_id)
        assert run is not None
        for i, (old, new, why) in enumerate([(1, 4, "it paid <x4>"), (4, 2, "it did not")]):
            at = run.started_at + timedelta(seconds=i + 1)
            store.record_limit_change(
                run_id, run.pipeline, at=at, from_limit=old, to_limit=new, reason=why
            )
    doc = client.get(f"/api/runs/{run_id}").json()
    assert [(c["from"], c["to"]) for c in doc["run"]["limit_changes"]] == [
        (None, 1), (1, 4), (4, 2)
    ]  # fmt: skip
    html = get(client, f"/runs/{run_id}")
    table = texts(html, "limit-changes")[0]
    assert "it paid <x4>" in table and "it did not" in table  # escaped text, read back
    assert "&lt;x4&gt;" in html and "1 → 4 → 2" in html


def test_every_run_of_tiny_has_its_page(
    client: TestClient, dashboard_history: DashboardHistory
) -> None:
    for run_id in dashboard_history.tiny_runs:
        doc = client.get(f"/api/runs/{run_id}").json()
        gantt = chart(get(client, f"/runs/{run_id}"), "gantt")
        bars = [b for b in classed(gantt, "rect", "bar") if b.get("data-step")]
        assert len(bars) == len(doc["timeline"]["rows"])
        late = [b for b in bars if "late" in (b.get("class") or "").split()]
        assert len(late) == doc["late"]


def test_the_pipeline_page_charts_every_run_and_the_step_trends(client: TestClient) -> None:
    doc = client.get("/api/pipelines/tiny/history").json()
    html = get(client, "/pipelines/tiny")
    history = chart(html, "history")
    dots = [a.find(NS + "circle") for a in history.iter(NS + "a")]
    assert len(dots) == len(doc["runs"]) == 4
    overlaps = {e["run_id"] for e in doc["events"] if e["kind"] == "overlap"}
    rings = [d for d in dots if d is not None and "collision" in (d.get("class") or "")]
    assert len(rings) == len(overlaps) == 1
    hrefs = {a.get("href") for a in history.iter(NS + "a")}
    assert hrefs == {f"/runs/{r['run_id']}" for r in doc["runs"]}
    assert texts(html, "run-count") == [str(len(doc["runs"]))]
    rows = re.findall(r'<tr data-step="([^"]+)"', html)
    assert rows == [s["step"] for s in doc["steps"]] == ["prep", "sum", "work"]
    (events,) = texts(html, "events")
    assert "overlap" in events and "refused" in events
    for run in doc["runs"]:
        assert format_duration(run["duration_s"]) in html


def test_the_quality_page_shows_the_summary_charts_and_model_card(
    client: TestClient, dashboard_history: DashboardHistory
) -> None:
    doc = client.get("/api/pipelines/tiny/quality").json()
    html = get(client, "/pipelines/tiny/quality")
    assert texts(html, "summary-coverage") == [f"{doc['summary']['coverage']:.1%}"]
    assert texts(html, "summary-mdape") == [f"{doc['summary']['mdape']:.1%}"]
    scatter = chart(html, "scatter")
    assert len(classed(scatter, "circle", "point")) == len(doc["points"]) > 0
    bars = chart(html, "bars")
    assert len(classed(bars, "rect", "value-bar")) == len(doc["steps"])
    coverage = chart(html, "coverage")
    assert len(classed(coverage, "circle", "cov")) == len(doc["coverage"])
    assert texts(html, "model-id") == [dashboard_history.model_id]
    assert "recorded in this history" in html


def test_the_alerts_page_lists_level_what_when_and_each_delivery(client: TestClient) -> None:
    doc = client.get("/api/alerts").json()
    html = get(client, "/alerts")
    assert texts(html, "alert-text") == [a["text"] for a in doc["alerts"]]
    deliveries = texts(html, "delivery")
    expected = [f"{d['sink']} {d['status']}" for a in doc["alerts"] for d in a["deliveries"]]
    assert [" ".join(d.split()[:2]) for d in deliveries] == expected
    assert any("connection refused" in d for d in deliveries)
    narrowed = get(client, "/alerts?pipeline=other")
    assert "No alert stored for other" in narrowed


def test_unknown_runs_and_pipelines_are_404_pages(client: TestClient) -> None:
    assert "no such run" in get(client, "/runs/nope", 404)
    assert "nope" in get(client, "/pipelines/nope", 404)
    assert "nope" in get(client, "/pipelines/nope/quality", 404)


def test_every_asset_is_served_from_the_package(client: TestClient) -> None:
    for path in ("/", "/pipelines/tiny", "/pipelines/tiny/quality", "/alerts"):
        html = get(client, path)
        for link in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert not re.match(r"^(https?:)?//", link), f"{path} loads {link}"
    for asset in ("dashboard.css", "live.js", "favicon.svg"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and response.content
    css = client.get("/static/dashboard.css").text
    assert "prefers-color-scheme: dark" in css and "@import" not in css


def test_templates_escape_names_from_users_files() -> None:
    need_web()
    from planner.web.templating import render

    nasty = '<img src=x onerror="alert(1)">'
    entry = {
        "pipeline": nasty,
        "state": "idle",
        "run_id": None,
        "progress": None,
        "last_run": None,
        "last_run_fit": None,
        "next_start": None,
        "next_reason": nasty,
        "last_decision": None,
        "leader": None,
        "alerts": {"open": 0, "critical": 0, "warning": 0, "info": 0, "undelivered": 0},
    }
    html = render(
        "overview.html",
        doc={"pipelines": [entry]},
        now="2026-03-01T12:00:00+00:00",
        root="",
        page="overview",
        live=True,
        api=None,
        history="sqlite://",
    )
    assert nasty not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "/pipelines/%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E" in html
