"""Real traces: import a job log as ``planner import`` does, and the README's evaluation
table of it.

:func:`import_trace` calls the use case behind ``planner import``
(:func:`planner.service.importing.import_history`); :func:`evaluation_table` is the
holdout of ``planner train`` (:func:`planner.analysis.quality.holdout_comparison`) in the
form of the README's table ("Measured with ``planner import ...`` then ``planner train
--holdout 0.3``"): same rows, same columns, same rounding. The two traces of that table
sit in ``../shared/data/`` beside the project (:func:`shared_data_dir`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from planner.defaults import HOLDOUT, QUANTILE
from planner.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from planner.analysis.history import Source
    from planner.learning.importers.common import ImportSummary

__all__ = [
    "JULIA_CI_MAPPING",
    "JULIA_CI_TRACE",
    "KTH_TRACE",
    "TABLE_COLUMNS",
    "evaluation_table",
    "import_trace",
    "shared_data_dir",
]

#: The Parallel Workloads Archive log of the README's first table.
KTH_TRACE = "KTH-SP2-1996-2.1-cln.swf.gz"
#: The Julia CI durations of the README's second table, and its mapping of columns.
JULIA_CI_TRACE = "julia-ci-durations.csv.gz"
JULIA_CI_MAPPING = "step=job,run_id=build,started_at=created_at,duration_s=duration_s"
#: The README table's columns: the metric of ``planner train --json``, its header, and
#: how it is written (x 100 for rates, then the digits kept).
TABLE_COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("mae_s", "MAE s", 1.0, 0),
    ("mdape", "MdAPE", 100.0, 1),
    ("mean_abs_log", "mean abs log", 1.0, 2),
    ("overrun", "overrun", 100.0, 1),
    ("median_bound_ratio", "bound/actual", 1.0, 2),
)
_KINDS_BY_SUFFIX = {".swf": "swf", ".csv": "csv"}


def shared_data_dir() -> Path:
    """``../shared/data`` beside the project root (where the real traces are kept)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, kind in _KINDS_BY_SUFFIX.items():
        if name.endswith(suffix):
            return kind
    raise UsageError(
        str(path), "cannot tell the kind of file from its name: pass kind='swf', 'csv' or 'sacct'"
    )


def import_trace(
    path: str | Path,
    url: str,
    kind: str = "auto",
    *,
    pipeline: str | None = None,
    mapping: str | Mapping[str, str] | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
) -> ImportSummary:
    """Import the job log at ``path`` into the history at ``url`` (created when absent),
    exactly as ``planner import KIND FILE`` does.

    ``kind``: ``swf``, ``csv``, ``sacct``, or ``auto`` (from the name: ``.swf[.gz]``,
    ``.csv[.gz]``). ``pipeline``: default the file name without its extensions (e.g.
    ``KTH-SP2-1996-2.1-cln``). ``mapping`` (csv): fields to columns, e.g.
    :data:`JULIA_CI_MAPPING`; ``time_format``, ``timezone``: as ``planner import``'s
    options. Importing a file again adds nothing (``duplicates`` counts those rows)."""
    from planner.service.importing import import_history

    path = Path(path)
    return import_history(
        url,
        path,
        _kind(path) if kind == "auto" else kind,
        pipeline=pipeline,
        mapping=mapping,
        time_format=time_format,
        timezone=timezone,
    )


def evaluation_table(
    url: Source,
    pipeline: str,
    holdout: float = HOLDOUT,
    *,
    title: str | None = None,
    quantile: float = QUANTILE,
) -> pd.DataFrame:
    """The README's evaluation table of ``pipeline``: the methods of ``planner train
    --holdout`` on its attempts, one row each.

    Index: ``model (<variant>)``, ``last2 (grouped)``, ``last10 (grouped)``,
    ``last10_x1.2``, named ``<title or pipeline> (<n> test jobs)``. Columns
    (:data:`TABLE_COLUMNS`): ``MAE s`` (seconds, whole), ``MdAPE`` (%, 1 decimal), ``mean
    abs log`` (2 decimals), ``overrun`` (% of the test jobs over their bound, 1 decimal),
    ``bound/actual`` (median, 2 decimals), bounds at ``quantile``. The unrounded figures
    are :func:`planner.analysis.quality.holdout_comparison`'s ``table``."""
    import pandas as pd

    from planner.analysis.quality import holdout_comparison

    comparison = holdout_comparison(url, pipeline, holdout, quantile=quantile)
    labels = {
        "model": f"model ({comparison.variant})",
        "last2": "last2 (grouped)",
        "last10": "last10 (grouped)",
        "last10_x1.2": "last10_x1.2",
    }
    scores = comparison.evaluation.methods
    out = pd.DataFrame(
        {
            header: [_rounded(scores[m][key] * scale, digits) for m in labels]
            for key, header, scale, digits in TABLE_COLUMNS
        },
        index=pd.Index(list(labels.values())),
    )
    out["MAE s"] = out["MAE s"].astype("int64")
    tests = comparison.evaluation.rows_test
    out.index.name = f"{title or pipeline} ({tests:,} test jobs)"
    return out


def _rounded(value: float, digits: int) -> float:
    """``value`` as the README writes it (``f"{value:.{digits}f}"``, correctly rounded)."""
    return float(f"{value:.{digits}f}")
