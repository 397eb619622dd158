"""The daemon's child processes: each run is a ``planner run``, each retraining a
``planner train``, so that a crash of either never takes the daemon down.

Children start in a session of their own (a Ctrl-C in the daemon's terminal or a signal
to the daemon's group does not reach them: the daemon decides what they get), read the
history's URL and the models folder from the environment (never the command line, where
``ps`` shows a password), and write their output to a log file per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = [
    "Child",
    "ChildLauncher",
    "Launcher",
    "RunSpec",
    "TrainSpec",
    "interrupt",
    "training_result",
]

#: Native thread pools a retraining may use: one fit at a time, on one core's threads.
_ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LOKY_MAX_CPU_COUNT": "1",
}


@dataclass(frozen=True)
class RunSpec:
    """One run to start: the pipeline file (the daemon's copy of its last valid version),
    the file it stands for, the run's id and where its output goes."""

    pipeline_file: Path
    as_file: Path
    run_id: str
    log_file: Path
    stop_grace_s: float
    models_dir: Path


@dataclass(frozen=True)
class TrainSpec:
    """One retraining: the pipeline's name in the history, its quantile, where its JSON
    document (stdout) and its messages (stderr) go."""

    pipeline: str
    quantile: float
    output_file: Path
    log_file: Path
    models_dir: Path


class Child(Protocol):
    """A started child process (``subprocess.Popen`` has this shape)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...


class Launcher(Protocol):
    """Starts the daemon's children (tests pass one that fakes runs on a fake clock)."""

    def start_run(self, spec: RunSpec) -> Child: ...

    def start_training(self, spec: TrainSpec) -> Child: ...


class ChildLauncher:
    """Starts ``python -m planner run|train`` with the daemon's history and models."""

    def __init__(self, db_url: str, *, executor: str | None = None) -> None:
        self._env = {**os.environ, "PLANNER_DB": db_url, "PYTHONUNBUFFERED": "1"}
        self._executor = executor  # ``--executor`` of each run (None: the file's)

    def start_run(self, spec: RunSpec) -> Child:
        """``planner run`` of ``spec`` (quiet: its log holds the summary and failures)."""
        argv = [
            sys.executable,
            "-m",
            "planner",
            "run",
            str(spec.pipeline_file),
            "--as-file",
            str(spec.as_file),
            "--run-id",
            spec.run_id,
            "--grace",
            f"{spec.stop_grace_s:g}s",
            "--quiet",
            *(["--executor", self._executor] if self._executor else []),
        ]
        env = {**self._env, "PLANNER_MODELS": str(spec.models_dir)}
        return self._start(argv, spec.log_file, spec.log_file, env)

    def start_training(self, spec: TrainSpec) -> Child:
        """``planner train --json`` of one pipeline, its native thread pools at one thread."""
        argv = [
            sys.executable,
            "-m",
            "planner",
            "train",
            "--pipeline",
            spec.pipeline,
            "--quantile",
            f"{spec.quantile:g}",
            "--json",
        ]
        env = {**self._env, "PLANNER_MODELS": str(spec.models_dir), **_ONE_THREAD}
        return self._start(argv, spec.output_file, spec.log_file, env)

    @staticmethod
    def _start(argv: list[str], stdout: Path, stderr: Path, env: dict[str, str]) -> Child:
        stdout.parent.mkdir(parents=True, exist_ok=True)
        stderr.parent.mkdir(parents=True, exist_ok=True)
        with open(stdout, "ab") as out:
            if stderr == stdout:
                return _popen(argv, out, subprocess.STDOUT, env)
            with open(stderr, "ab") as err:
                return _popen(argv, out, err, env)


def _popen(argv: list[str], out: IO[bytes], err: IO[bytes] | int, env: dict[str, str]) -> Child:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        env=env,
        start_new_session=True,
        close_fds=True,
    )


def interrupt(child: Child) -> None:
    """Ask a child to stop as ``planner run`` understands it (SIGTERM: running tasks get
    their grace, then are killed; the run is recorded ``cancelled``)."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile
            child.send_signal(signal.SIGTERM)


def training_result(code: int, out: Path, log_file: Path) -> tuple[str, dict[str, Any]]:
    """One line and the figures of a ``planner train --json`` child's result."""
    if code != 0:
        tail = _last_line(log_file)
        return f"retraining failed (exit {code}): {tail}", {"exit_code": code}
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        return f"retraining wrote no readable result ({exc})", {"exit_code": code}
    serving = doc.get("serving") or {}
    method = serving.get("method", "?")
    rows = doc.get("rows") or {}
    total = (rows.get("train") or 0) + (rows.get("test") or 0)
    detail = {
        "exit_code": code,
        "model_id": doc.get("model_id"),
        "serving": method,
        "rows": total,
        "rows_test": rows.get("test"),
    }
    text = (
        f"retrained on {total} attempts (judged on the latest {rows.get('test', 0)}): model "
        f"{doc.get('model_id')}; serving {method} ({serving.get('reason', 'no reason given')})"
    )
    return text, detail


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {path}"
    return lines[-1] if lines else f"see {path}"
