"""The service layer stands alone, and its views of the history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from planner.cli import main


def test_service_layer_imports_without_the_command_line() -> None:
    code = (
        "import sys\n"
        "import planner.service, planner.service.planning, planner.service.running\n"
        "import planner.service.views, planner.service.training\n"
        "bad = [m for m in sys.modules if m.startswith('planner.commands') or m == 'planner.cli']\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_the_daemon_imports_without_the_command_line_and_its_display() -> None:
    code = (
        "import sys\n"
        "import planner.daemon, planner.daemon.core, planner.daemon.main, planner.daemon.timer\n"
        "import planner.service.scheduling, planner.service.status\n"
        "bad = [m for m in sys.modules if m.startswith(('planner.commands', 'planner.display',"
        " 'planner.web')) or m == 'planner.cli']\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_runs_without_history_creates_nothing(tmp_path: Path) -> None:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "planner", "runs", *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
            env=env_free,
        )
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / ".planner").exists()
        if extra:
            assert json.loads(proc.stdout) == {"runs": []}
        else:
            expected = tmp_path.resolve() / ".planner" / "history.db"
            assert proc.stdout.startswith(f"no history at {expected}: run a pipeline first")


def test_show_prints_the_stderr_tail_of_failed_attempts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {
        "name": "tails",
        "state_dir": str(tmp_path / "state"),
        "steps": [
            {
                "id": "boom",
                "command": [
                    sys.executable,
                    "-c",
                    "import sys; print('ConnectionError: upstream refused', file=sys.stderr); "
                    "sys.exit(3)",
                ],
            },
            {"id": "fine", "command": [sys.executable, "-c", "pass"]},
        ],
    }
    path = tmp_path / "tails.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["run", str(path), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    by_step = {a["step"]: a for a in doc["attempts"]}
    assert "ConnectionError: upstream refused" in by_step["boom"]["stderr_tail"]
    assert by_step["fine"]["stderr_tail"] is None
    assert main(["show", doc["run"]["run_id"], "--pipeline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "boom attempt 1 stderr (end):" in out
    assert "  ConnectionError: upstream refused" in out
    # --quiet: the summary and the failures only
    assert main(["run", str(path), "--quiet"]) == 1
    quiet = capsys.readouterr().out
    assert "ConnectionError: upstream refused" in quiet
    assert "fine" not in quiet


def test_runs_mark_partial_runs_and_link_a_resume_to_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real runs: full (step 2 fails the first time), --steps, --accounts, --resume, full."""
    flaky = "import os, sys; os.path.exists('done') or (open('done', 'w'), sys.exit(4))"
    raw = {
        "name": "kinds",
        "state_dir": str(tmp_path / "state"),
        "accounts": ["a", "b", "c"],
        "steps": [
            {"id": "1", "command": [sys.executable, "-c", "pass"], "per_account": True},
            {"id": "2", "command": [sys.executable, "-c", flaky], "depends_on": ["1"]},
        ],
    }
    path = tmp_path / "kinds.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    ids = []
    for extra in ([], ["--steps", "1"], ["--accounts", "b"]):
        main(["run", str(path), "--quiet", *extra])
        capsys.readouterr()
        assert main(["runs", "--pipeline", str(path), "--limit", "1", "--json"]) == 0
        ids.append(json.loads(capsys.readouterr().out)["runs"][0]["run_id"])
    assert main(["run", str(path), "--resume", ids[0], "--quiet"]) == 0
    assert main(["run", str(path), "--quiet"]) == 0
    capsys.readouterr()
    db = f"sqlite:///{tmp_path / 'state' / 'history.db'}"
    for where in (["--pipeline", str(path)], ["--db", db]):  # with and without the file
        assert main(["runs", *where, "--json"]) == 0
        runs = json.loads(capsys.readouterr().out)["runs"][::-1]  # oldest first
        assert [r["partial"] for r in runs] == [False, True, True, False, False]
        assert [r["resumed_from"] for r in runs] == [None, None, None, ids[0], None]
        everything = {"steps": None, "accounts": None}
        assert runs[0]["selection"] == {
            "steps": ["1", "2"], "accounts": ["a", "b", "c"], "requested": everything
        }  # fmt: skip
        assert runs[1]["selection"] == {
            "steps": ["1"], "accounts": ["a", "b", "c"],
            "requested": {"steps": ["1"], "accounts": None},
        }  # fmt: skip
        assert runs[2]["selection"] == {
            "steps": ["1", "2"], "accounts": ["b"],
            "requested": {"steps": None, "accounts": ["b"]},
        }  # fmt: skip
        assert runs[3]["tasks"] == {"succeeded": 1}  # the resume ran only step 2
        assert "note" not in runs[0]
    assert main(["runs", "--pipeline", str(path)]) == 0
    table = capsys.readouterr().out
    assert "partial: steps 1" in table and "partial: accounts b" in table
    assert f"resume of {ids[0]}" in table
    assert main(["show", ids[1], "--db", db, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["run"]
    assert shown["partial"] is True and shown["selection"]["steps"] == ["1"]
    assert main(["show", runs[3]["run_id"], "--db", db]) == 0
    assert f"; resume of {ids[0]}" in capsys.readouterr().out.splitlines()[0]
    # the newest run alone, without the file: a subset of the runs before it is partial
    assert main(["run", str(path), "--steps", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["runs", "--db", db, "--limit", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["partial"] is True


def _kinds_of(tmp_path: Path, selections: list[dict[str, list[str]]], **kwargs: object) -> list:
    """The kinds of runs with these selections, one a day, written through the store."""
    from datetime import UTC, datetime, timedelta

    from planner.history import HistoryStore
    from planner.service.views import run_kinds

    url = f"sqlite:///{tmp_path / 'kinds.db'}"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with HistoryStore(url) as store:
        for day, selection in enumerate(selections):
            run_id = f"r{day:02d}"
            store.create_run(
                run_id=run_id,
                pipeline="p",
                started_at=t0 + timedelta(days=day),
                selection=selection,
            )
            store.finish_run(run_id, "succeeded", t0 + timedelta(days=day, hours=1))
        kinds = run_kinds(store.list_runs("p"), **kwargs)  # type: ignore[arg-type]
    return [kinds[f"r{day:02d}"] for day in range(len(selections))]


def test_growth_and_shrinkage_are_not_partial_runs(tmp_path: Path) -> None:
    def sel(*accounts: str) -> dict[str, list[str]]:
        return {"steps": ["1", "2"], "accounts": list(accounts)}

    abc, ab = sel("a", "b", "c"), sel("a", "b")
    # accounts grow from the third run on, shrink from the sixth; a dip in the middle
    kinds = _kinds_of(tmp_path, [ab, ab, abc, sel("b"), abc, ab, ab, ab])
    assert [k.accounts for k in kinds] == [None, None, None, ("b",), None, None, None, None]
    assert [k.kind for k in kinds] == ["full"] * 3 + ["partial"] + ["full"] * 4
    assert all(k.steps is None for k in kinds)


def test_the_newest_run_is_judged_by_the_runs_before_it_or_the_file(tmp_path: Path) -> None:
    from planner.config.loader import parse_pipeline

    full = {"steps": ["1", "2"], "accounts": ["a", "b"]}
    one = {"steps": ["1"], "accounts": ["a", "b"]}
    (tmp_path / "a").mkdir()
    kinds = _kinds_of(tmp_path / "a", [full, full, one])
    assert kinds[-1].steps == ("1",)
    # two subset runs in a row at the end look like a shrinkage without the file ...
    (tmp_path / "b").mkdir()
    kinds = _kinds_of(tmp_path / "b", [full, full, one, one])
    assert [k.partial for k in kinds] == [False, False, False, False]
    # ... and are partial with it: the file stands for the next run
    raw = {
        "name": "p",
        "accounts": ["a", "b"],
        "steps": [
            {"id": "1", "command": ["true"], "per_account": True},
            {"id": "2", "command": ["true"], "depends_on": ["1"]},
        ],
    }
    pipeline, issues = parse_pipeline(raw, base_dir=tmp_path)
    assert pipeline is not None, issues
    (tmp_path / "c").mkdir()
    kinds = _kinds_of(tmp_path / "c", [full, full, one, one], pipeline=pipeline)
    assert [k.partial for k in kinds] == [False, False, True, True]
    # a run stored without a selection (imports, older rows) is never partial
    (tmp_path / "d").mkdir()
    kinds = _kinds_of(tmp_path / "d", [full, {}, one, {}])
    assert [k.partial for k in kinds] == [False, False, True, False]


def test_the_eta_of_a_run_follows_its_adaptive_limit(tmp_path: Path) -> None:
    """``run_progress`` schedules what is left on the run's latest limit, not the one it
    started with: 8 tasks of 10 s take 80 s on 1 slot, 10 s once the limit is 8."""
    from datetime import UTC, datetime, timedelta

    from planner.history import HistoryStore
    from planner.service.monitor import run_progress

    t0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    tasks = [
        {"step": "s", "account": f"a{i}", "predicted_s": 10.0, "bound_s": 12.0, "source": "m"}
        for i in range(8)
    ]
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
        store.create_run(run_id="r", pipeline="p", started_at=t0, concurrency=1)
        store.save_plan("p", "r", t0, 80.0, 96.0, {"tasks": tasks, "run": {}})
        store.record_limit_change("r", "p", at=t0, from_limit=None, to_limit=1, reason="start")
        before = run_progress(store, "r", t0, {"s": []})
        store.record_limit_change("r", "p", at=t0, from_limit=1, to_limit=8, reason="it paid")
        after = run_progress(store, "r", t0, {"s": []})
    assert before is not None and after is not None
    assert before.eta == t0 + timedelta(seconds=80)
    assert after.eta == t0 + timedelta(seconds=10)
