"""What every plot of the analysis shares: a new figure, colors per step, time axes.

Figures are plain :class:`matplotlib.figure.Figure` objects, made without pyplot: no
global figure list to leak into, no GUI backend chosen (no display is needed; ``savefig``
renders with Agg), and nothing shown. In Jupyter, ``%matplotlib inline`` (the notebooks'
first cell) shows a figure that ends a cell. matplotlib is imported here, when a plot is
asked for, never when :mod:`planner.analysis` is imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["new_figure", "no_data", "step_colors", "utc_naive"]


def new_figure(width: float = 9.0, height: float = 4.5) -> tuple[Figure, Axes]:
    """A figure of ``width`` x ``height`` inches with one axes, laid out by matplotlib's
    constrained layout (labels never cut off, no warnings)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def step_colors(steps: Iterable[str]) -> dict[str, Any]:
    """One color per step, in the order given (tab10, then tab20 for more than ten)."""
    from matplotlib import colormaps

    names = list(dict.fromkeys(steps))
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(index % palette.N) for index, name in enumerate(names)}


def utc_naive(times: pd.Series) -> np.ndarray:
    """Aware UTC times as naive ``datetime64`` values (UTC), which matplotlib draws as
    dates without a timezone converter."""
    import numpy as np

    return np.asarray(times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy())


def no_data(axes: Axes, text: str) -> None:
    """Say ``text`` in the middle of an empty plot."""
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])
