"""Import Slurm accounting records: ``sacct --parsable2`` output, with no mapping to write.

Made by, for example::

    sacct --allusers --parsable2 --starttime 2026-01-01 \\
      --format=JobID,JobName,User,Account,Partition,NCPUS,ReqCPUS,ReqMem,Timelimit,\\
    Submit,Start,End,Elapsed,State,ExitCode,MaxRSS,TotalCPU > jobs.txt

Bar-separated, a header line naming sacct's columns (any case, any order; ``--parsable``
with its trailing ``|`` too; plain or ``.gz``). Only the columns present are used;
``JobID``, ``JobName`` and two of ``Start``, ``End``, ``Elapsed`` (or ``ElapsedRaw``) are
required, ``Start`` or ``End`` among them.

One record per job: a job's own line (``12345``, array task ``12345_7``, het component
``12345+1``) is the record; its step lines (``12345.batch``, ``12345.extern``,
``12345.0``...) are folded into it: they only add the largest ``MaxRSS`` of the job. A
step line whose job line is not in the file is malformed (it says so). ``read`` counts
job records; the folded steps are counted apart.

=================  ==============================================================
run_id             the job id without its step suffix (``12345``, ``12345_7``)
step               ``JobName`` (``job`` when empty)
account            ``User``, else ``Account`` when ``User`` is empty or absent
quantity           ``NCPUS``, else ``ReqCPUS``, else ``AllocCPUS`` (the first non-zero)
started_at         ``Start``, a local time in ``--timezone`` (default UTC)
finished_at        ``End``; ``Unknown`` while the job runs
duration_s         ``Elapsed`` (``[D-]HH:MM:SS``), else ``ElapsedRaw`` (seconds)
status             ``State``: see :func:`~.values.map_status` (``RUNNING``, ``PENDING``:
                   unfinished, skipped until a later export)
exit_code          ``ExitCode`` ``N:S``: N, or 128 + S when signal S ended the job
params             ``partition`` (``Partition``), ``timelimit`` (seconds, from
                   ``Timelimit`` or ``TimelimitRaw`` minutes; ``UNLIMITED``,
                   ``Partition_Limit``, ``INVALID`` leave it out), ``reqmem`` (MiB, from
                   ``ReqMem``; a per-CPU ``c`` suffix times the CPUs)
peak_rss_mb        the largest ``MaxRSS`` of the job and its steps, in MiB
cpu_s              ``TotalCPU`` of the job line (else the sum of its steps')
=================  ==============================================================

Identity: the source is ``sacct`` (not the file name) and the key the job id and its start
text (``12345@2026-02-01T10:00:00``, with ``<Cluster>/`` in front when the file has a
``Cluster`` column): the same job exported again, in this file or in a later export with
another name, is stored once per pipeline; a requeued job's earlier runs (``sacct
--duplicates``, state ``REQUEUED``) start at other times and are kept apart.

Malformed lines (a wrong number of fields, an empty ``JobID``, a value that does not parse,
no start time) are skipped, counted and, for the first ones, explained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import InputFileError
from planner.gcpause import paused_gc
from planner.learning.importers.common import ParsedImport, read_lines
from planner.learning.importers.frame import Check, TableText, build_frame
from planner.learning.importers.values import (
    ABSENT,
    LIMIT_WORDS,
    duration_seconds,
    slurm_duration,
    zone_name,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SACCT_SOURCE", "parse_sacct", "size_mib"]

#: The ``source`` of every attempt imported from sacct.
SACCT_SOURCE = "sacct"

_REQUIRED = "sacct's --format must include JobID, JobName, Start and Elapsed or End"
_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(i?B?)?([nc]?)$", re.IGNORECASE)
_MIB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2, "p": 1024.0**3}


def size_mib(text: str, *, default_unit: str = "M") -> tuple[float, str] | None:
    """A Slurm size (``4000M``, ``16Gn``, ``2000Mc``, ``123456K``, ``1.5G``) in MiB and
    its per-unit suffix (``n`` per node, ``c`` per CPU, ``""``); ``None`` when it is not
    one. A number without a unit is in ``default_unit``."""
    match = _SIZE.match(text.strip())
    if match is None:
        return None
    number, unit, _, per = match.groups()
    return float(number) * _MIB[(unit or default_unit).lower()], per.lower()


class _Columns:
    """The header's columns, found by name whatever their case."""

    def __init__(self, header: list[str]) -> None:
        self.names = header
        self.index: dict[str, int] = {}
        for i, name in enumerate(header):
            self.index.setdefault(name.strip().lower(), i)

    def has(self, name: str) -> bool:
        return name.lower() in self.index

    def name(self, name: str) -> str:
        return self.names[self.index[name.lower()]].strip()

    def first(self, *names: str) -> str | None:
        return next((n for n in names if self.has(n)), None)


def _check_header(path: Path, columns: _Columns) -> None:
    listed = ", ".join(n for n in columns.names if n) or "none"
    hint = (
        " (was it exported with --noheader?)"
        if not any(columns.has(n) for n in ("JobID", "JobName", "State", "Start", "End"))
        else ""
    )

    def refuse(what: str) -> InputFileError:
        return InputFileError(str(path), f"{what}: {_REQUIRED} (columns: {listed}){hint}")

    for name in ("JobID", "JobName"):
        if not columns.has(name):
            raise refuse(f"no column {name!r}")
    duration = columns.first("Elapsed", "ElapsedRaw")
    if not columns.has("Start") and not columns.has("End"):
        raise refuse("no column 'Start'")
    if not columns.has("Start") and duration is None:
        raise refuse("no column 'Start', nor 'Elapsed' to place each job from its End")
    if duration is None and not columns.has("End"):
        raise refuse("no column 'Elapsed' or 'End'")


def _split(line: str, width: int, trailing: bool) -> list[str]:
    fields = line.split("|")
    if trailing and len(fields) == width + 1 and fields[-1] == "":
        fields.pop()
    return fields


def parse_sacct(path: Path, *, timezone: str | None = None) -> ParsedImport:
    """Parse ``sacct --parsable2`` output into one attempt row per job (see the module
    docstring). Raises :class:`InputFileError` naming a missing required column."""
    with paused_gc():  # millions of small, cycle-free lists and strings
        return _parse_sacct(path, zone_name(timezone))


def _parse_sacct(path: Path, zone: str) -> ParsedImport:
    import numpy as np
    import pandas as pd

    lines = read_lines(path)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputFileError(str(path), "empty file: no header line")
    if "|" not in lines[first]:
        raise InputFileError(
            str(path),
            "not sacct --parsable2 output: the header line has no '|' (run sacct with "
            "--parsable2 and without --noheader)",
        )
    header = lines[first].split("|")
    trailing = len(header) > 1 and header[-1].strip() == ""
    if trailing:
        header.pop()
    columns = _Columns(header)
    _check_header(path, columns)
    width = len(header)
    job_col = columns.index["jobid"]

    jobs: list[list[str]] = []
    job_lines: list[int] = []
    rejected: list[tuple[int, str]] = []
    latest: dict[str, int] = {}  # job id -> its latest job row (steps follow their job)
    steps: dict[int, list[list[str]]] = {}
    folded = 0
    for number in range(first + 2, len(lines) + 1):
        text = lines[number - 1]
        if not text.strip():
            continue
        fields = _split(text, width, trailing)
        if len(fields) != width:
            rejected.append((number, f"{len(fields)} fields, the header has {width}"))
            continue
        jobid = fields[job_col].strip()
        job, dot, _ = jobid.partition(".")
        if not job:
            rejected.append((number, f"{columns.name('JobID')} {jobid!r} is not a job id"))
        elif not dot:
            latest[job] = len(jobs)
            jobs.append(fields)
            job_lines.append(number)
        elif job in latest:
            steps.setdefault(latest[job], []).append(fields)
            folded += 1
        else:
            rejected.append(
                (number, f"JobID {jobid!r} is a step of job {job!r}, whose line is not here")
            )

    def column(name: str | None) -> pd.Series:
        if name is None:
            return pd.Series(pd.NA, index=range(len(jobs)), dtype="string")
        i = columns.index[name.lower()]
        values = pd.Series([row[i] for row in jobs], index=range(len(jobs)), dtype="string")
        values = values.str.strip()
        return values.mask(values == "")

    job_ids = column("JobID")  # job lines: no step suffix
    quantity_names = [n for n in ("NCPUS", "ReqCPUS", "AllocCPUS") if columns.has(n)]
    quantity = _first_nonzero([column(n) for n in quantity_names], len(jobs))
    duration_name = columns.first("Elapsed", "ElapsedRaw")
    cells = pd.DataFrame(
        {
            "run_id": job_ids,
            "step": column("JobName"),
            "account": column(columns.first("User")).fillna(column(columns.first("Account"))),
            "quantity": quantity,
            "started_at": column(columns.first("Start")),
            "finished_at": column(columns.first("End")),
            "duration_s": column(duration_name),
            "status": column(columns.first("State")),
            "exit_code": column(columns.first("ExitCode")),
        },
        index=range(len(jobs)),
    )
    labels = {
        "run_id": "JobID",
        "step": "JobName",
        "account": "User",
        "quantity": "/".join(columns.name(n) for n in quantity_names) or "NCPUS",
        "started_at": "Start",
        "finished_at": "End",
        "duration_s": duration_name or "Elapsed",
        "status": "State",
        "exit_code": "ExitCode",
    }
    table = TableText(
        fields=cells,
        columns={
            field: columns.name(name) if columns.has(name) else name
            for field, name in labels.items()
        },
        lines=np.asarray(job_lines, dtype=np.int64),
        read=len(jobs) + len(rejected),
        rejected=rejected,
    )
    cpus = pd.to_numeric(quantity, errors="coerce").astype("float64").tolist()
    params, checks = _params(columns, column, cpus)
    return build_frame(
        table,
        keys=_keys(job_ids, column("Start"), column(columns.first("Cluster"))),
        params=params,
        time_format=None,
        zone=zone,
        checks=checks,
        extra=_usage(columns, jobs, steps),
        folded=folded,
    )


def _first_nonzero(candidates: list[pd.Series], n: int) -> pd.Series:
    """Per row, the first candidate's value that is present and not zero (else the first
    present one)."""
    import pandas as pd

    out = pd.Series(pd.NA, index=range(n), dtype="string")
    for values in candidates:
        usable = values.mask(values.str.lower().isin(ABSENT))
        zero = (pd.to_numeric(usable, errors="coerce") == 0).fillna(False).astype(bool)
        out = out.fillna(usable.mask(zero))
    for values in candidates:
        out = out.fillna(values.mask(values.str.lower().isin(ABSENT)))
    return out


def _keys(job_ids: pd.Series, start: pd.Series, cluster: pd.Series) -> pd.Series:
    """``[cluster/]jobid@start``, with ``#n`` for the n-th repeat within the file."""
    import pandas as pd

    prefix = (cluster + "/").fillna("")
    base = (prefix + job_ids + "@" + start.fillna("")).tolist()
    seen: dict[str, int] = {}
    keys = []
    for key in base:
        count = seen.get(key, 0)
        seen[key] = count + 1
        keys.append(f"{key}#{count}" if count else key)
    return pd.Series(keys, dtype="string")


def _params(
    columns: _Columns, column: Callable[[str | None], pd.Series], cpus: list[float]
) -> tuple[list[dict[str, Any]], list[Check]]:
    """``partition``, ``timelimit`` (s), ``reqmem`` (MiB) per job, and the checks of the
    values that do not parse."""
    import numpy as np
    import pandas as pd

    n = len(cpus)
    found: dict[str, list[Any]] = {}
    checks: list[Check] = []
    if columns.has("Partition"):
        found["partition"] = [None if v is pd.NA else str(v) for v in column("Partition").tolist()]
    if columns.has("Timelimit"):
        text = column("Timelimit")
        seconds, bad = duration_seconds(text, numbers=False)
        checks.append((bad, f"{columns.name('Timelimit')} {{value}} is not a duration", text))
        found["timelimit"] = _numbers(seconds)
    elif columns.has("TimelimitRaw"):
        text = column("TimelimitRaw")
        limited = text.mask(text.str.lower().isin(LIMIT_WORDS | ABSENT))
        minutes = pd.to_numeric(limited, errors="coerce")
        bad = (limited.notna() & minutes.isna()).to_numpy()
        checks.append((bad, f"{columns.name('TimelimitRaw')} {{value}} is not minutes", text))
        found["timelimit"] = _numbers(minutes * 60.0)
    if columns.has("ReqMem"):
        text = column("ReqMem")
        present = text.notna() & ~text.str.lower().isin(ABSENT)
        sizes = {t: size_mib(t) for t in text[present].unique().tolist()}
        mib: list[Any] = [None] * n
        bad = np.zeros(n, dtype=bool)
        for row, (value, ok) in enumerate(zip(text.tolist(), present.tolist(), strict=True)):
            if not ok:
                continue
            size = sizes[value]
            if size is None:
                bad[row] = True
                continue
            amount, per = size
            if per == "c":
                amount *= cpus[row]  # NaN when the CPUs are unknown
            mib[row] = None if math.isnan(amount) else _number(amount)
        checks.append((bad, f"{columns.name('ReqMem')} {{value}} is not a memory size", text))
        found["reqmem"] = mib
    names = list(found)
    params = (
        [
            {k: v for k, v in zip(names, row, strict=True) if v is not None}
            for row in zip(*found.values(), strict=True)
        ]
        if names
        else [{} for _ in range(n)]
    )
    return params, checks


def _numbers(values: pd.Series) -> list[Any]:
    return [None if math.isnan(v) else _number(v) for v in values.astype("float64").tolist()]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _usage(
    columns: _Columns, jobs: list[list[str]], steps: dict[int, list[list[str]]]
) -> dict[str, pd.Series]:
    """``peak_rss_mb``: the largest MaxRSS of each job and its steps; ``cpu_s``: the job's
    TotalCPU, else the sum of its steps'. Values that do not parse count as missing."""
    import pandas as pd

    out: dict[str, pd.Series] = {}
    if columns.has("MaxRSS"):
        i = columns.index["maxrss"]
        peaks = []
        for row, fields in enumerate(jobs):
            sizes = [_rss(f[i]) for f in (fields, *steps.get(row, ()))]
            known = [s for s in sizes if s is not None]
            peaks.append(max(known) if known else math.nan)
        out["peak_rss_mb"] = pd.Series(peaks, dtype="float64")
    if columns.has("TotalCPU"):
        i = columns.index["totalcpu"]
        cpu = []
        for row, fields in enumerate(jobs):
            own = slurm_duration(fields[i]) if fields[i].strip() else None
            if own is None or own == 0:
                parts = [slurm_duration(f[i]) for f in steps.get(row, ()) if f[i].strip()]
                known = [p for p in parts if p is not None]
                own = sum(known) if known else own
            cpu.append(math.nan if own is None else own)
        out["cpu_s"] = pd.Series(cpu, dtype="float64")
    return out


def _rss(text: str) -> float | None:
    size = size_mib(text, default_unit="K") if text.strip() else None
    return None if size is None else size[0]
