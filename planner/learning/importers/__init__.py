"""Importers: history from other systems (SWF workload logs, CSV tables of runs, Slurm
``sacct`` output).

Each parser turns a file into normalised attempt rows (:class:`ParsedImport`);
:func:`import_parsed` writes them into the history store in one transaction, idempotently.
Importing this package does not import pandas: the parsers do, when called.
"""

from planner.learning.importers.common import (
    ImportSummary,
    ParsedImport,
    default_pipeline_name,
    import_parsed,
)
from planner.learning.importers.sacct import parse_sacct
from planner.learning.importers.swf import parse_swf
from planner.learning.importers.table import parse_csv, parse_mapping
from planner.learning.importers.values import map_status

__all__ = [
    "ImportSummary",
    "ParsedImport",
    "default_pipeline_name",
    "import_parsed",
    "map_status",
    "parse_csv",
    "parse_mapping",
    "parse_sacct",
    "parse_swf",
]
