"""Plain HTTP for the dashboard's tests: urllib against a real server on 127.0.0.1, and
``planner`` as a real process (the command line's documents to compare with)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    method: str | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One request, no redirects followed; any status comes back as an :class:`Answer`."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
                response.headers.get_all("set-cookie") or [],
            )
    except urllib.error.HTTPError as error:
        return Answer(
            error.code,
            {k.lower(): v for k, v in error.headers.items()},
            error.read(),
            error.headers.get_all("set-cookie") or [],
        )


def planner_json(*args: str, env: dict[str, str] | None = None) -> Any:
    """``planner ARGS --json`` as a process: its one JSON document."""
    done = subprocess.run(
        [sys.executable, "-m", "planner", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
