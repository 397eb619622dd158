"""The dashboard: a read-only web front end on the service layer (``planner dashboard``).

- :mod:`planner.web.app`: ``create_app(...)``, the Starlette application: the JSON API
  (the documents of :mod:`planner.service.dashboard`), live progress as server-sent
  events, ``/metrics``, ``/healthz``, and the HTML pages of :mod:`planner.web.pages`;
- :mod:`planner.web.context`: what every route reads (the instance, the clock);
- :mod:`planner.web.auth`: the token rule;
- :mod:`planner.web.server`: uvicorn on a thread (``serve_dashboard``).

Like every front end it imports :mod:`planner.service` (and
:mod:`planner.monitoring.metrics` for ``/metrics``), never the command line, the
display, the daemon or the analysts' API. Starlette, Jinja2 and uvicorn come with
``pip install -e '.[web]'``; importing this package alone imports none of them.
"""
