"""The HTML pages of the dashboard, rendered on the server from the documents of
:mod:`planner.service.dashboard` (the ones the JSON API answers), so a plain GET holds
every key figure; ``static/live.js`` updates running runs in place on top.

- ``/``: the overview: each pipeline's state, its running run's progress and ETA, its last
  run against prediction and bound, its next start and why, its open alerts;
- ``/runs/{run_id}``: a run's Gantt chart, failures with their stderr tails, retries,
  limit changes (when the document has them), every attempt;
- ``/pipelines/{name}``: duration per run over time, collisions and deferrals, per-step
  trend, the runs;
- ``/pipelines/{name}/quality``: predicted vs actual, coverage against its target, error
  per step, the live model's card;
- ``/alerts``: level, what, when, delivery per sink (``?pipeline=`` to narrow);
- ``/static/...``: the stylesheet, the script, the icon (all in the package).

An unknown run or pipeline answers 404, a history that cannot be read 503, each as a page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from planner.errors import PlannerError, UsageError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from planner.web.context import DashboardContext

__all__ = ["STATIC_DIR", "page_routes"]

#: The stylesheet, script and icon the pages load (shipped in the package).
STATIC_DIR = Path(__file__).resolve().parent / "static"
_FAILED = frozenset({"failed", "timed_out", "interrupted"})


def page_routes() -> list[BaseRoute]:
    """The pages of the module docstring and the ``/static`` mount."""
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    return [
        Route("/", overview_page, methods=["GET"], name="overview"),
        Route("/runs/{run_id}", run_page, methods=["GET"], name="run"),
        Route("/pipelines/{name}", pipeline_page, methods=["GET"], name="pipeline"),
        Route("/pipelines/{name}/quality", quality_page, methods=["GET"], name="quality"),
        Route("/alerts", alerts_view, methods=["GET"], name="alerts"),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def _page(
    request: Request,
    template: str,
    build: Callable[[DashboardContext], dict[str, Any]],
) -> Response:
    """Render ``template`` with what ``build`` returns (and the values every page uses);
    planner errors become an error page: 404 for an unknown run or pipeline, else 503."""
    from starlette.responses import HTMLResponse

    from planner.web.context import context
    from planner.web.templating import render

    ctx = context(request)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    common = {"root": root, "page": template.removesuffix(".html"), "live": False, "api": None}
    try:
        values = build(ctx)
        history = ctx.instance().url
    except UsageError as exc:
        return HTMLResponse(_error(common, 404, "not found", f"{exc.where}: {exc.what}"), 404)
    except PlannerError as exc:
        text = "; ".join(exc.lines())
        return HTMLResponse(_error(common, 503, "history unavailable", text), 503)
    body = render(template, **{**common, "history": history, **values})
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


def _error(common: dict[str, Any], status: int, title: str, what: str) -> str:
    from planner.web.templating import render

    values = {**common, "page": "error", "history": "", "now": None}
    return render("error.html", **{**values, "status": status, "title": title, "what": what})


def _svg(text: str) -> Any:
    """Chart text for a template: already escaped by :mod:`planner.web.charts`."""
    from markupsafe import Markup

    return Markup(text)  # built by planner.web.charts: every value in it is escaped


# -- the pages ---------------------------------------------------------------------------


def overview_page(request: Request) -> Response:
    from planner.service.dashboard import overview

    def build(ctx: DashboardContext) -> dict[str, Any]:
        doc = overview(ctx.instance(), ctx.now())
        return {"doc": doc, "now": doc["now"], "live": True, "api": "/api/pipelines"}

    return _page(request, "overview.html", build)


def run_page(request: Request) -> Response:
    from planner.service.dashboard import run_detail
    from planner.web.charts import gantt_svg

    run_id = request.path_params["run_id"]

    def build(ctx: DashboardContext) -> dict[str, Any]:
        now = ctx.now()
        doc = run_detail(ctx.instance(), run_id, now)
        rows = doc["timeline"]["rows"]
        return {
            "doc": doc,
            "run": doc["run"],
            "attempts": doc["attempts"],
            "retries": doc["retries"],
            "failures": [a for a in doc["attempts"] if a["status"] in _FAILED],
            "planned": {(r["step"], r["account"], r["attempt"]): r for r in rows},
            "gantt": _svg(gantt_svg(rows, span_s=doc["timeline"]["span_s"])),
            "now": now.isoformat(),
            "live": doc["progress"] is not None,
            "api": f"/api/runs/{quote(run_id, safe='')}",
        }

    return _page(request, "run.html", build)


def pipeline_page(request: Request) -> Response:
    from planner.service.dashboard import pipeline_detail, pipeline_history
    from planner.web.charts import history_svg

    name = request.path_params["name"]
    root = str(request.scope.get("root_path", "")).rstrip("/")

    def build(ctx: DashboardContext) -> dict[str, Any]:
        now = ctx.now()
        detail = pipeline_detail(ctx.instance(), name, now)
        try:
            doc = pipeline_history(ctx.instance(), name, now)
        except UsageError:  # known to the daemon, never run
            doc = {"runs": [], "events": [], "steps": []}
        runs, events = doc["runs"], doc["events"]
        collided = {e["run_id"] for e in events if e["kind"] == "overlap"}
        chart_runs = [{**r, "collision": r["run_id"] in collided} for r in reversed(runs)]
        marks = [e for e in events if e["kind"] != "overlap"]
        planned = [r for r in runs if r["duration_s"] is not None and r["bound_s"] is not None]
        chart = history_svg(
            chart_runs, marks, run_href=lambda run_id: f"{root}/runs/{quote(run_id, safe='')}"
        )
        return {
            "name": name,
            "entry": detail["pipeline"],
            "runs": runs,
            "events": events,
            "history_chart": _svg(chart),
            "trends": _trends(doc["steps"]),
            "failed_runs": sum(1 for r in runs if r["status"] in _FAILED),
            "within_bound": (
                sum(1 for r in planned if r["duration_s"] <= r["bound_s"]) / len(planned)
                if planned
                else None
            ),
            "collisions": len(collided),
            "deferrals": sum(1 for e in events if e["kind"] in ("deferred", "refused")),
            "now": now.isoformat(),
            "live": True,
            "api": f"/api/pipelines/{quote(name, safe='')}/history",
        }

    return _page(request, "pipeline.html", build)


def _trends(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per step: its medians' first, previous and latest, the change between the last
    two, and a sparkline of them all."""
    from planner.web.charts import sparkline_svg

    out = []
    for step in steps:
        values = [float(p["median_s"]) for p in step["points"]]
        previous = values[-2] if len(values) > 1 else None
        out.append(
            {
                "step": step["step"],
                "runs": len(values),
                "first": values[0] if values else None,
                "previous": previous,
                "latest": values[-1] if values else None,
                "change": values[-1] / previous - 1 if previous else None,
                "spark": _svg(sparkline_svg(values)),
            }
        )
    return out


def quality_page(request: Request) -> Response:
    from planner.service.dashboard import model_quality, pipeline_detail
    from planner.web.charts import bars_svg, coverage_svg, predicted_vs_actual_svg

    name = request.path_params["name"]

    def build(ctx: DashboardContext) -> dict[str, Any]:
        now = ctx.now()
        pipeline_detail(ctx.instance(), name, now, runs=1)  # 404 for an unknown pipeline
        doc = model_quality(ctx.instance(), name, now)
        points = [{**c, "n": c["tasks"]} for c in doc["coverage"]]
        errors = [(s["step"], float(s["mdape"])) for s in doc["steps"]]
        return {
            "name": name,
            "doc": doc,
            "scatter": _svg(predicted_vs_actual_svg(doc["points"])),
            "error_bars": _svg(bars_svg(errors, label="MdAPE per step", fmt=_percent)),
            "coverage_chart": _svg(coverage_svg(points, float(doc["target"]))),
            "now": now.isoformat(),
            "api": f"/api/pipelines/{quote(name, safe='')}/quality",
        }

    return _page(request, "quality.html", build)


def _percent(value: float) -> str:
    return f"{value:.1%}"


def alerts_view(request: Request) -> Response:
    from planner.service.dashboard import alerts_page

    name = request.query_params.get("pipeline") or None

    def build(ctx: DashboardContext) -> dict[str, Any]:
        doc = alerts_page(ctx.instance(), ctx.now(), pipeline=name)
        api = "/api/alerts" + (f"?pipeline={quote(name, safe='')}" if name else "")
        return {"doc": doc, "now": doc["now"], "api": api}

    return _page(request, "alerts.html", build)
