"""The dashboard's Starlette application: the JSON API, live updates, metrics, health.

Routes (all GET: nothing here starts or stops work; the one POST is ``/login``):

- ``/api/pipelines``: :func:`~planner.service.dashboard.overview` (``planner status
  --json`` plus each pipeline's progress, last run's fit and open alerts);
- ``/api/pipelines/{name}``: :func:`~planner.service.dashboard.pipeline_detail`;
- ``/api/pipelines/{name}/history?limit=50``:
  :func:`~planner.service.dashboard.pipeline_history`;
- ``/api/pipelines/{name}/quality?runs=50``:
  :func:`~planner.service.dashboard.model_quality`;
- ``/api/runs/{run_id}``: :func:`~planner.service.dashboard.run_detail` (``planner show
  --json`` plus the timeline);
- ``/api/alerts?pipeline=&limit=200``: :func:`~planner.service.dashboard.alerts_page`;
- ``/api/events``: server-sent events: a ``progress`` event every ``live_interval_s``
  (1.5 s) with :func:`~planner.service.dashboard.live`; the stream ends when the client
  goes or the server stops;
- ``/metrics``: the Prometheus text of :class:`~planner.monitoring.metrics.HistoryCollector`
  (the daemon's ``--metrics`` families) on a private registry;
- ``/healthz``: ``ok``, always open;
- ``/login``: the token's form (:mod:`planner.web.auth`);
- the HTML pages of :func:`planner.web.pages.page_routes`.

An unknown pipeline or run answers 404, a bad query parameter 400, a history that cannot
be read 503; each ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from planner.clock import SYSTEM_CLOCK, Clock
from planner.errors import PlannerError, UsageError
from planner.web.auth import TokenGuard, check_token
from planner.web.context import DashboardContext, context

if TYPE_CHECKING:
    from planner.service.instance import Instance

__all__ = ["api_routes", "create_app"]


def create_app(
    source: Instance | Callable[[], Instance] | str,
    models_dir: Path | None = None,
    *,
    token: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    live_interval_s: float = 1.5,
) -> Starlette:
    """The dashboard of a history: ``source`` is an open
    :class:`~planner.service.instance.Instance` (borrowed: left open at shutdown), a
    function that opens one (on first use; closed at shutdown), or a history URL (opened
    with ``models_dir``, default ``$PLANNER_MODELS`` or ``./.planner/models``). ``token``:
    every request but ``/healthz``, ``/login`` and ``/static/...`` needs it
    (:mod:`planner.web.auth`)."""
    from planner.service.instance import Instance
    from planner.web.pages import page_routes

    check_token(token)
    if isinstance(source, Instance):
        borrowed = source
        ctx = DashboardContext(lambda: borrowed, owns_instance=False)
    elif isinstance(source, str):
        ctx = DashboardContext(_opener(source, models_dir, clock))
    else:
        ctx = DashboardContext(source)
    ctx.clock = clock
    ctx.guarded = token is not None
    ctx.live_interval_s = live_interval_s

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.stopping.set()
            ctx.close()

    app = Starlette(
        routes=[*api_routes(), *page_routes()],
        middleware=[Middleware(TokenGuard, token=token)],
        lifespan=lifespan,
    )
    app.state.dashboard = ctx
    return app


def _opener(url: str, models_dir: Path | None, clock: Clock) -> Callable[[], Instance]:
    def open_instance() -> Instance:
        from planner.history import HistoryStore
        from planner.service import models_dir as default_models
        from planner.service.instance import Instance

        return Instance(HistoryStore(url, clock=clock), default_models(models_dir), clock=clock)

    return open_instance


def api_routes() -> list[BaseRoute]:
    """The routes of the module docstring but the pages and ``/login``."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/pipelines", pipelines, methods=["GET"]),
        Route("/api/pipelines/{name}", pipeline, methods=["GET"]),
        Route("/api/pipelines/{name}/history", history, methods=["GET"]),
        Route("/api/pipelines/{name}/quality", quality, methods=["GET"]),
        Route("/api/runs/{run_id}", run, methods=["GET"]),
        Route("/api/alerts", alerts, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
    ]


# -- answers -----------------------------------------------------------------------------


def _json(document: Any, status: int = 200) -> Response:
    body = json.dumps(document, default=str, separators=(",", ":"))
    return Response(body, status, media_type="application/json")


def _error(status: int, what: str) -> Response:
    return _json({"error": what}, status)


class BadQuery(ValueError):
    """A query parameter that does not parse (answered 400)."""


def _int(request: Request, name: str, default: int, *, low: int = 1, high: int = 10_000) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name}: expected a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _answer(request: Request, build: Callable[[DashboardContext], Any]) -> Response:
    """Build a document in this worker thread; map errors to HTTP answers: a bad query
    400, an unknown pipeline or run 404, a history that cannot be read 503."""
    ctx = context(request)
    try:
        return _json(build(ctx))
    except BadQuery as exc:
        return _error(400, str(exc))
    except UsageError as exc:
        return _error(404, f"{exc.where}: {exc.what}")
    except PlannerError as exc:  # StoreError, ...
        return _error(503, "; ".join(exc.lines()))


# -- routes (sync: Starlette runs them on its thread pool; the store blocks) --------------


def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


def pipelines(request: Request) -> Response:
    from planner.service.dashboard import overview

    return _answer(request, lambda ctx: overview(ctx.instance(), ctx.now()))


def pipeline(request: Request) -> Response:
    from planner.service.dashboard import pipeline_detail

    name = request.path_params["name"]
    return _answer(request, lambda ctx: pipeline_detail(ctx.instance(), name, ctx.now()))


def history(request: Request) -> Response:
    from planner.service.dashboard import pipeline_history

    name = request.path_params["name"]
    return _answer(
        request,
        lambda ctx: pipeline_history(
            ctx.instance(), name, ctx.now(), limit=_int(request, "limit", 50)
        ),
    )


def quality(request: Request) -> Response:
    from planner.service.dashboard import model_quality

    name = request.path_params["name"]
    return _answer(
        request,
        lambda ctx: model_quality(ctx.instance(), name, ctx.now(), runs=_int(request, "runs", 50)),
    )


def run(request: Request) -> Response:
    from planner.service.dashboard import run_detail

    run_id = request.path_params["run_id"]
    return _answer(request, lambda ctx: run_detail(ctx.instance(), run_id, ctx.now()))


def alerts(request: Request) -> Response:
    from planner.service.dashboard import alerts_page

    name = request.query_params.get("pipeline") or None
    return _answer(
        request,
        lambda ctx: alerts_page(
            ctx.instance(), ctx.now(), pipeline=name, limit=_int(request, "limit", 200)
        ),
    )


def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry

    from planner.monitoring.metrics import HistoryCollector

    ctx = context(request)
    try:
        store = ctx.instance().store
    except PlannerError as exc:
        return _error(503, "; ".join(exc.lines()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HistoryCollector(store, None, clock=ctx.clock))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def events(request: Request) -> Response:
    """Server-sent events: ``progress`` with the running runs, every beat, until the
    client disconnects or the server stops."""
    from planner.service.dashboard import live

    ctx = context(request)

    async def stream() -> AsyncIterator[str]:
        yield f"retry: {int(ctx.live_interval_s * 1000)}\n\n"
        while not ctx.stopping.is_set():
            try:
                document = await run_in_threadpool(
                    ctx.cached,
                    "live",
                    ctx.live_interval_s / 2,
                    lambda: live(ctx.instance(), ctx.now()),
                )
                yield f"event: progress\ndata: {json.dumps(document, default=str)}\n\n"
            except PlannerError as exc:
                yield f"event: problem\ndata: {json.dumps({'error': '; '.join(exc.lines())})}\n\n"
            if await request.is_disconnected():
                return
            with anyio.move_on_after(ctx.live_interval_s):
                await _stopped(ctx)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _stopped(ctx: DashboardContext) -> None:
    """Return once the server is stopping (checked every 0.1 s)."""
    while not ctx.stopping.is_set():
        await anyio.sleep(0.1)
