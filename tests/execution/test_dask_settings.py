"""Choosing the Dask executor (pipeline file, ``--executor``, the daemon's children) and the
retry class ``lost``; no cluster and no dask needed."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from planner.config.models import Executor, RetryAction, RetryPolicy
from planner.execution.retry import LOST_CLASS, decide_retry


def test_executor_defaults_to_local_and_reads_a_dask_address() -> None:
    assert Executor().kind == "local" and Executor().address is None
    dask = Executor(kind="dask", address="tcp://10.0.0.5:8786", worker_wait="90s")
    assert dask.worker_wait == 90.0 and dask.connect_timeout == 10.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"kind": "dask"}, "kind: dask needs an address"),
        ({"kind": "local", "address": "tcp://h:1"}, "kind: local takes no address"),
        ({"kind": "dask", "address": "http://h:1"}, "bad scheduler address 'http://h:1'"),
        ({"kind": "ray", "address": "tcp://h:1"}, "'local' or 'dask'"),
    ],
)
def test_bad_executor_sections_say_what_is_wrong(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Executor(**raw)


def test_the_flag_reads_local_and_dask_urls() -> None:
    assert Executor.from_flag("local") == Executor()
    flag = Executor.from_flag("dask://127.0.0.1:8786")
    assert flag.kind == "dask" and flag.address == "tcp://127.0.0.1:8786"
    with pytest.raises(ValueError, match="expected local or dask://HOST:PORT"):
        Executor.from_flag("somewhere")


def test_the_command_line_refuses_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from planner.cli import build_parser

    with pytest.raises(SystemExit) as ended:
        build_parser().parse_args(["run", "p.yaml", "--executor", "dask://nohost"])
    assert ended.value.code == 2
    assert "expected local or dask://HOST:PORT" in capsys.readouterr().err
    args = build_parser().parse_args(["daemon", "p.yaml", "--executor", "dask://h:8786"])
    assert args.executor == "dask://h:8786"


def test_the_daemon_passes_the_flag_to_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from planner.daemon.children import ChildLauncher, RunSpec

    seen: list[list[str]] = []
    monkeypatch.setattr(ChildLauncher, "_start", staticmethod(lambda argv, *_: seen.append(argv)))
    spec = RunSpec(tmp_path / "p.yaml", tmp_path / "p.yaml", "r1", tmp_path / "log", 10.0, tmp_path)
    ChildLauncher("sqlite://", executor="dask://h:8786").start_run(spec)
    ChildLauncher("sqlite://").start_run(spec)
    assert seen[0][:3] == [sys.executable, "-m", "planner"]
    assert seen[0][-2:] == ["--executor", "dask://h:8786"]
    assert "--executor" not in seen[1]


def test_a_lost_attempt_is_retried_once_by_default() -> None:
    rng = random.Random(1)
    common: dict[str, Any] = {"exit_code": -1, "stderr_tail": "", "timed_out": False, "rng": rng}
    first = decide_retry(None, attempt=1, lost=True, **common)
    assert first.error_class == LOST_CLASS and first.retry and first.delay_s == 1.0
    assert not decide_retry(None, attempt=2, lost=True, **common).retry
    # `on.default` is about the command's own failures: it does not turn `lost` off
    policy = RetryPolicy(on={"default": RetryAction(max_retries=0)})
    assert decide_retry(policy, attempt=1, lost=True, **common).retry
    # a policy can name the class: more retries, or none
    more = RetryPolicy(on={"lost": RetryAction(max_retries=3, backoff="fixed", base=0.5)})
    assert decide_retry(more, attempt=3, lost=True, **common).retry
    off = RetryPolicy(on={"lost": RetryAction(max_retries=0)})
    assert not decide_retry(off, attempt=1, lost=True, **common).retry
