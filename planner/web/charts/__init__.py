"""The dashboard's charts, drawn on the server as SVG text (no script, no network).

Each function takes rows of a dashboard document and returns one ``<svg>`` element that
scales to its container (``viewBox``). Shapes carry classes the stylesheet colors through
CSS variables, for light and dark (``step-N`` per step, ``late``, ``failed``, ``band``,
``target``, ...), with a plain color attribute as the fallback; each mark has a ``<title>``
tooltip. All text is escaped: step and account names come from users' files.

- :func:`gantt_svg`: a run's attempts by slot against their predicted length and bound;
- :func:`history_svg`: duration per run over time, the predicted band, collisions and
  deferrals;
- :func:`coverage_svg`: the bound's coverage over time against its target;
- :func:`predicted_vs_actual_svg`: a log-log scatter with y = x;
- :func:`bars_svg`: one bar per label (error per step);
- :func:`sparkline_svg`: a tiny trend line for a table cell.
"""

from planner.web.charts.axes import step_classes
from planner.web.charts.gantt import gantt_svg
from planner.web.charts.history import history_svg, sparkline_svg
from planner.web.charts.quality import bars_svg, coverage_svg, predicted_vs_actual_svg

__all__ = [
    "bars_svg",
    "coverage_svg",
    "gantt_svg",
    "history_svg",
    "predicted_vs_actual_svg",
    "sparkline_svg",
    "step_classes",
]
