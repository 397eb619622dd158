"""The Jinja2 environment of the dashboard's pages: templates from the package, autoescape
on, and the filters that write figures the same way everywhere (durations as the command
line writes them, times in UTC, shares as percentages)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from planner.units import format_duration
from planner.web.charts.svg import when

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["clock", "duration", "environment", "relative", "render", "short_clock"]

_NONE = "—"


def duration(seconds: object) -> str:
    """``12.3s`` as :func:`planner.units.format_duration` writes it; ``—`` for none."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return _NONE
    return format_duration(float(seconds))


def clock(value: object) -> str:
    """An instant as ``2026-03-01 12:00:05 UTC`` (``—`` for none)."""
    moment = when(value)
    return _NONE if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def short_clock(value: object, now: object) -> str:
    """An instant as ``12:00:05 UTC`` on the day of ``now`` (UTC), else with its date."""
    moment, reference = when(value), when(now)
    if moment is None:
        return _NONE
    if reference is not None and moment.date() == reference.date():
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def relative(value: object, now: object) -> str:
    """``in 5m 3s`` or ``2.0h ago`` from ``now`` (``just now`` within a second)."""
    moment, reference = when(value), when(now)
    if moment is None or reference is None:
        return _NONE
    seconds = (moment - reference).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    return f"in {format_duration(seconds)}" if seconds > 0 else f"{format_duration(-seconds)} ago"


def _pct(value: object, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NONE
    return f"{value:.{digits}%}"


def _pct_number(value: object) -> str:
    """A percent already in 0-100 (a progress bar's value)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NONE
    return f"{value:.0f}%"


def _signed_pct(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NONE
    return f"{value:+.0%}"


def _megabytes(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NONE
    return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB"


def _ratio(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NONE
    return f"{value:.2f}×"


def _urlpart(value: object) -> str:
    return quote(str(value), safe="")


@functools.cache
def environment() -> Environment:
    """The environment (made once): ``planner/web/templates``, HTML escaped."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("planner.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration,
        clock=clock,
        relative=relative,
        short_clock=short_clock,
        pct=_pct,
        pct_number=_pct_number,
        signed_pct=_signed_pct,
        megabytes=_megabytes,
        ratio=_ratio,
        urlpart=_urlpart,
    )
    return env


def render(template: str, /, **values: Any) -> str:
    """The template named ``template`` filled with ``values``."""
    return environment().get_template(template).render(**values)
