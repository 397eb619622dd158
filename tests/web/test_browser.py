"""The dashboard in a real browser: Playwright drives Debian's Chromium, headless, against
the dashboard served by uvicorn on a history made by real runs.

Each page loads without a script error and shows the figures the API gives; a run started
with ``python -m planner run`` moves its progress bar without a reload (through the
server-sent events, and through the polling fallback when EventSource is missing); and
every page is photographed in light and dark, on a laptop and a phone, into
``$PLANNER_TEST_ARTIFACTS/screenshots`` (default ``tests/web/artifacts/screenshots``).

Without Playwright or Chromium these tests skip, saying why; in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from planner.units import format_duration
from tests.conftest import REPO, need
from tests.dashboard_history import sleepy_pipeline

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from planner.web.server import DashboardServer
    from tests.dashboard_history import DashboardHistory

pytestmark = pytest.mark.slow

CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
ARTIFACTS = Path(os.environ.get("PLANNER_TEST_ARTIFACTS") or REPO / "tests" / "web" / "artifacts")
SHOTS = ARTIFACTS / "screenshots"
VIEWPORTS = {"laptop": (1366, 900), "phone": (390, 844)}


def _chromium() -> str | None:
    named = os.environ.get("PLANNER_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return next((p for p in CHROMIUM if Path(p).exists()), None) or shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    need(
        importlib.util.find_spec("playwright") is not None,
        "Playwright for Python is not installed (pip install playwright)",
    )
    executable = _chromium()
    need(executable is not None, "Chromium not found (apt-get install chromium)")
    assert executable is not None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def _serve(url: str, models: Path) -> DashboardServer:
    for module in ("starlette", "jinja2", "uvicorn"):
        found = importlib.util.find_spec(module) is not None
        need(found, f"{module} is missing: pip install -e '.[web]'")
    from planner.web.server import serve_dashboard

    return serve_dashboard(url, "127.0.0.1", 0, models_dir=models, live_interval_s=0.5)


@pytest.fixture(scope="module")
def server(dashboard_history: DashboardHistory) -> Iterator[DashboardServer]:
    with _serve(dashboard_history.url, dashboard_history.models) as running:
        yield running


def _api(server: DashboardServer, path: str) -> Any:
    response = httpx.get(server.url + path.lstrip("/"), timeout=10)
    response.raise_for_status()
    return response.json()


class _Errors(list[str]):
    """Script errors and console errors of a page."""

    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda error: self.append(f"pageerror: {error}"))
        page.on("console", lambda m: self.append(m.text) if m.type == "error" else None)
        return page


def _page(browser: Browser, errors: _Errors, *, scheme: str = "light", view: str = "laptop",
          no_event_source: bool = False) -> Page:  # fmt: skip
    width, height = VIEWPORTS[view]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,  # type: ignore[arg-type]
    )
    if no_event_source:
        context.add_init_script("Object.defineProperty(window, 'EventSource', {value: undefined})")
    return errors.watch(context.new_page())


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


# -- pages against the API ---------------------------------------------------------------


def test_the_overview_shows_the_apis_figures(browser: Browser, server: DashboardServer) -> None:
    doc = _api(server, "/api/pipelines")
    errors = _Errors()
    page = _page(browser, errors)
    page.goto(server.url)
    for entry in doc["pipelines"]:
        card = page.locator(f'article[data-pipeline="{entry["pipeline"]}"]')
        shown = card.locator(".last-duration").inner_text().strip()
        assert shown == format_duration(entry["last_run"]["duration_s"])
        assert card.locator(".badge").first.inner_text() == entry["state"]
        if entry["next_reason"]:
            assert entry["next_reason"] in card.locator(".next-reason").inner_text()
    tiny = next(p for p in doc["pipelines"] if p["pipeline"] == "tiny")
    alerts = page.locator('article[data-pipeline="tiny"] .alert-count').inner_text()
    assert alerts == str(tiny["alerts"]["open"])
    page.wait_for_function("document.getElementById('live-status').textContent === 'live'")
    assert errors == []
    page.context.close()


def test_each_run_page_has_a_bar_per_attempt(
    browser: Browser, server: DashboardServer, dashboard_history: DashboardHistory
) -> None:
    errors = _Errors()
    page = _page(browser, errors)
    for run_id in (*dashboard_history.tiny_runs, dashboard_history.other_run):
        doc = _api(server, f"/api/runs/{run_id}")
        page.goto(f"{server.url}runs/{run_id}")
        bars = page.locator("svg.gantt g.bars rect.bar")
        assert bars.count() == len(doc["attempts"]) == len(doc["timeline"]["rows"])
        assert page.locator("svg.gantt rect.bar.failed").count() == sum(
            a["status"] == "failed" for a in doc["attempts"]
        )
        duration = page.locator(".run-duration").inner_text()
        assert duration == format_duration(doc["run"]["duration_s"])
    page.goto(f"{server.url}runs/{dashboard_history.tiny_runs[0]}")
    assert page.locator("pre.stderr").inner_text() == "boom a2"
    tooltip = page.locator("svg.gantt g.task title").first.text_content() or ""
    assert "attempt 1" in tooltip
    assert errors == []
    page.context.close()


def test_history_quality_and_alerts_pages_match_the_api(
    browser: Browser, server: DashboardServer
) -> None:
    errors = _Errors()
    page = _page(browser, errors)
    history = _api(server, "/api/pipelines/tiny/history")
    page.goto(f"{server.url}pipelines/tiny")
    assert page.locator("svg.history a circle.run").count() == len(history["runs"])
    assert page.locator("table.trend tbody tr").count() == len(history["steps"])
    quality = _api(server, "/api/pipelines/tiny/quality")
    page.goto(f"{server.url}pipelines/tiny/quality")
    assert page.locator("svg.scatter circle.point").count() == len(quality["points"])
    coverage = page.locator(".summary-coverage").inner_text()
    assert coverage == f"{quality['summary']['coverage']:.1%}"
    assert page.locator(".model-id").inner_text() == quality["model"]["id"]
    alerts = _api(server, "/api/alerts")
    page.goto(f"{server.url}alerts")
    shown = page.locator(".alert-text").all_inner_texts()
    assert shown == [a["text"] for a in alerts["alerts"]]
    assert errors == []
    page.context.close()


def test_the_script_formats_durations_as_the_server_does(
    browser: Browser, server: DashboardServer
) -> None:
    page = _page(browser, _Errors())
    page.goto(server.url)
    values = [0.0, 0.25, 0.9994, 1.0, 12.345, 59.96, 60.0, 754.2, 3599.9, 3600.0, 90000.0, 3e5]
    shown = page.evaluate("(vs) => vs.map((v) => window.plannerLive.duration(v))", values)
    assert shown == [format_duration(v) for v in values]
    page.context.close()


# -- screenshots -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("view", ["laptop", "phone"])
def test_every_page_renders_in_both_schemes_and_on_a_phone(
    browser: Browser,
    server: DashboardServer,
    dashboard_history: DashboardHistory,
    scheme: str,
    view: str,
) -> None:
    pages = {
        "overview": "",
        "run": f"runs/{dashboard_history.tiny_runs[0]}",
        "pipeline": "pipelines/tiny",
        "quality": "pipelines/tiny/quality",
        "alerts": "alerts",
    }
    errors = _Errors()
    page = _page(browser, errors, scheme=scheme, view=view)
    for name, path in pages.items():
        page.goto(server.url + path)
        dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        assert dark == (scheme == "dark")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert (background == "rgb(15, 18, 22)") == (scheme == "dark"), background
        # the page itself never scrolls sideways: wide charts and tables scroll in their box
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} is {overflow}px wider than a {view} screen"
        _shot(page, f"{name}-{scheme}-{view}")
    assert errors == []
    page.context.close()


# -- a live run --------------------------------------------------------------------------


def _wait(condition: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


_VALUE = "(document.querySelector('[data-live-pipeline=\"sleepy\"] progress')?.value ?? -1)"


def test_a_live_run_moves_its_progress_bar_without_a_reload(
    browser: Browser, tmp_path: Path
) -> None:
    pipeline = sleepy_pipeline(tmp_path, "sleepy", tasks=5, seconds=1.5)
    url = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    command = [sys.executable, "-m", "planner", "run", str(pipeline), "--db", url, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # a first run gives the second its predictions: a real ETA, a bar that fills
    first = subprocess.run(
        command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    run = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        with _serve(url, tmp_path / "models") as server:

            def running() -> dict[str, Any] | None:
                if run.poll() is not None:
                    raise AssertionError(f"planner run ended early: {run.communicate()}")
                doc = _api(server, "/api/pipelines")
                entry = next((p for p in doc["pipelines"] if p["pipeline"] == "sleepy"), None)
                return entry if entry and entry["progress"] else None

            entry = _wait(running, "the run to show its progress in the API")
            errors = _Errors()
            live = _page(browser, errors)
            polling = _page(browser, errors, no_event_source=True)
            for page in (polling, live):  # polling first: it looks every 5 s
                page.goto(server.url)
                page.evaluate("window.__notReloaded = true")
            first = live.evaluate(_VALUE)
            assert first >= 0 and live.locator(".tasks").inner_text().endswith("running")
            moved = f"window.__notReloaded === true && {_VALUE} > {first}"
            live.wait_for_function(moved, timeout=10_000)
            assert live.locator("#live-status").inner_text() == "live"
            _shot(live, "live-overview-running")
            live_run = live.context.new_page()
            live_run.goto(f"{server.url}runs/{entry['run_id']}")
            assert live_run.locator("svg.gantt rect.bar.running").count() == 1
            _shot(live_run, "live-run-running")
            live_run.close()
            start = polling.evaluate(_VALUE)
            polling.wait_for_function(f"window.__notReloaded === true && {_VALUE} > {start}",
                                      timeout=15_000)  # fmt: skip
            assert polling.locator("#live-status").inner_text() == "polling"
            assert run.wait(timeout=60) == 0, run.communicate()
            ended = "window.__notReloaded === true && document.querySelector("
            ended += "'[data-live-pipeline=\"sleepy\"]').dataset.state === 'idle'"
            live.wait_for_function(ended, timeout=10_000)  # the page redrew itself
            (sleepy,) = _api(server, "/api/pipelines")["pipelines"]
            last = sleepy["last_run"]
            assert last["run_id"] == entry["run_id"] and last["predicted_s"] is not None
            shown = live.locator('[data-pipeline="sleepy"] .last-duration').inner_text()
            assert shown == format_duration(last["duration_s"])
            _shot(live, "live-overview-finished")
            assert errors == []
            for page in (live, polling):
                page.context.close()
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()
