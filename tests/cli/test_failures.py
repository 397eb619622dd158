"""Bad input and broken environments, end to end: the real CLI as a process.

The ground rule: a wrong config, a corrupt model file, a killed process, a full disk give
one line ``planner: error: <where>: <what>`` on stderr (no traceback), the right exit
code, and a history that is intact afterwards (the rows from before are all there and
``PRAGMA integrity_check`` is ok). A full disk is made two ways: a small tmpfs mounted
for the state dir (needs root; skipped with the reason elsewhere), and, always,
RLIMIT_FSIZE set in the child with SIGXFSZ ignored (writes past the limit fail, EFBIG).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ERROR_LINE = re.compile(r"^planner: error: (?P<where>.+?): (?P<what>.+)$")
KiB = 1024


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: writes past ``limit`` fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def planner(
    *args: str | Path, cwd: Path, fsize: int | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m planner ARGS`` from this checkout, optionally with a file size limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANNER_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "planner", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_file_size_limit(fsize) if fsize is not None else None,
    )


def one_error(done: subprocess.CompletedProcess[str], code: int = 2) -> tuple[str, str]:
    """The (where, what) of the single error line; checks the exit code, no traceback.

    ``planner: note:`` lines (said once a run has started) are information, not errors."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [
        line for line in done.stderr.strip().splitlines() if not line.startswith("planner: note:")
    ]
    assert len(lines) == 1, f"expected one error line, got:\n{done.stderr}"
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    assert done.returncode == code, (done.returncode, done.stderr)
    return match["where"], match["what"]


def history(db: Path) -> dict[str, Any]:
    """What the SQLite history holds, read with bare sqlite3; asserts integrity."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {
            "runs": {r[0]: r[1] for r in conn.execute("SELECT run_id, status FROM runs")},
            "attempts": set(
                conn.execute(
                    "SELECT attempt_id, run_id, step, account, status, started_at, finished_at,"
                    " duration_s, source FROM attempts"
                )
            ),
            "version": conn.execute(
                "SELECT value FROM planner_meta WHERE key = 'schema_version'"
            ).fetchone()[0],
        }
    finally:
        conn.close()


def write_pipeline(path: Path, state_dir: Path, *, output_kib: int = 0, **extra: Any) -> Path:
    """A pipeline ``t``: step ``a`` per account (printing ``output_kib`` KiB), then ``b``."""
    code = f"import sys; sys.stdout.write('x' * {output_kib * KiB})"
    data = {
        "name": "t",
        "accounts": ["a1", "a2", "a3"],
        "state_dir": str(state_dir),
        "concurrency": {"max": 1},
        "steps": [
            {"id": "a", "command": [sys.executable, "-c", code], "per_account": True},
            {"id": "b", "command": ["true"], "depends_on": ["a"]},
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_csv(path: Path, rows: int, *, day: int = 1) -> Path:
    lines = ["job,started_at,duration_s"]
    for i in range(rows):
        stamp = (
            f"2026-01-{day + i // 86400:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        )
        lines.append(f"job{i % 7},{stamp},{i % 100 + 1}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CSV_MAP = ("--map", "step=job,started_at=started_at,duration_s=duration_s")


def run_ok(pipeline: Path, cwd: Path) -> str:
    """Run ``pipeline`` to success; returns the run id."""
    done = planner("run", pipeline, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["run"]["run_id"])


def check_recovered(pipeline: Path, db: Path, before: dict[str, Any], cwd: Path) -> None:
    """After the failure: old rows intact, and the next run works and leaves none running."""
    after = history(db)
    assert before["attempts"] <= after["attempts"], "rows from before were lost or changed"
    assert all(after["runs"][r] == s for r, s in before["runs"].items())
    run_ok(pipeline, cwd)
    final = history(db)
    assert before["attempts"] <= final["attempts"]
    assert "running" not in final["runs"].values(), final["runs"]
    assert all(a[4] != "running" for a in final["attempts"])


# -- (a) a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted under ``tmp_path`` (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        _need(False, "mounting a tmpfs needs root and mount(8); RLIMIT_FSIZE tests still run")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    _need(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with a file, then give ``leave`` bytes back."""
    filler = disk / "filler"
    block = b"\0" * (64 * KiB)
    with open(filler, "wb", buffering=0) as out:
        try:
            while out.write(block):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_disk_fills_up_while_running(small_disk: Path, tmp_path: Path) -> None:
    state = small_disk / "state"
    small = write_pipeline(tmp_path / "small.yaml", state)
    db = state / "history.db"
    first = run_ok(small, tmp_path)
    before = history(db)
    # The first task's log (3 MiB of output) fills the 2 MiB disk; then the runner's writes fail.
    big = write_pipeline(tmp_path / "big.yaml", state, output_kib=3 * KiB)
    where, what = one_error(planner("run", big, "--quiet", cwd=tmp_path))
    assert where == f"sqlite:///{db}"
    assert "disk" in what, what
    shutil.rmtree(state / "logs")  # space again (logs are not history)
    check_recovered(small, db, before, tmp_path)
    assert history(db)["runs"][first] == "succeeded"


def test_full_disk_before_a_run_starts_nothing(small_disk: Path, tmp_path: Path) -> None:
    state = small_disk / "state"
    small = write_pipeline(tmp_path / "small.yaml", state)
    db = state / "history.db"
    run_ok(small, tmp_path)
    before = history(db)
    filler = fill(small_disk)
    where, what = one_error(planner("run", small, cwd=tmp_path))
    assert where == f"sqlite:///{db}" and "disk" in what, what
    filler.unlink()
    assert history(db) == before
    check_recovered(small, db, before, tmp_path)


def test_disk_fills_up_while_importing(small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "history.db"
    url = f"sqlite:///{db}"
    done = planner("import", "csv", write_csv(tmp_path / "old.csv", 50), *CSV_MAP, "--db", url,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = history(db)
    filler = fill(small_disk, leave=160 * KiB)  # room to open the database, not to import
    big = write_csv(tmp_path / "new.csv", 3000, day=10)
    where, what = one_error(planner("import", "csv", big, *CSV_MAP, "--db", url, cwd=tmp_path))
    assert where == url and "full" in what, what
    filler.unlink()
    assert history(db) == before  # one transaction: nothing of the failed import is stored
    done = planner("import", "csv", big, *CSV_MAP, "--db", url, "--json", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["imported"] == 3000


def test_file_size_limit_while_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pipeline = write_pipeline(tmp_path / "p.yaml", state, accounts=[f"a{i}" for i in range(8)])
    db = state / "history.db"
    run_ok(pipeline, tmp_path)
    before = history(db)
    limit = db.stat().st_size + 8 * KiB  # the write-ahead log soon grows past it
    where, what = one_error(planner("run", pipeline, "--quiet", cwd=tmp_path, fsize=limit))
    assert where == f"sqlite:///{db}"
    assert what == "disk I/O error (SQLITE_IOERR_WRITE)", what
    check_recovered(pipeline, db, before, tmp_path)


def test_file_size_limit_while_importing(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    url = f"sqlite:///{db}"
    done = planner("import", "csv", write_csv(tmp_path / "old.csv", 50), *CSV_MAP, "--db", url,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = history(db)
    big = write_csv(tmp_path / "new.csv", 20_000, day=10)
    limit = db.stat().st_size + 64 * KiB
    done = planner("import", "csv", big, *CSV_MAP, "--db", url, cwd=tmp_path, fsize=limit)
    where, what = one_error(done)
    assert where == url and what.startswith("disk I/O error"), what
    assert history(db) == before


# -- (b) a corrupt, tampered or truncated model file ------------------------------------------


def _corrupt(folder: Path, how: str) -> None:
    model, card = folder / "model.joblib", folder / "card.json"
    data = model.read_bytes()
    if how == "tampered":
        model.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF])
                          + data[len(data) // 2 + 1 :])  # fmt: skip
    elif how == "truncated":
        model.write_bytes(data[: len(data) // 3])
    elif how == "rehashed":  # the card rewritten to match: the history's digest refuses it
        garbage = data[:500]
        model.write_bytes(garbage)
        document = json.loads(card.read_text(encoding="utf-8"))
        document["sha256"] = hashlib.sha256(garbage).hexdigest()
        card.write_text(json.dumps(document), encoding="utf-8")
    elif how == "bad-card":
        card.write_text('{"sha256": ', encoding="utf-8")
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A history of pipeline ``t`` and a model trained on it (once for the module)."""
    folder = tmp_path_factory.mktemp("trained")
    lines = ["step,account,started_at,duration_s,quantity"]
    for i in range(240):
        step, account = ("a", f"a{i % 3 + 1}") if i % 4 else ("b", "")
        seconds = (10 + i % 20) * (2 if step == "a" else 5) + i % 3
        stamp = f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"
        lines.append(f"{step},{account},{stamp},{seconds},{10 + i % 20}")
    (folder / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = folder / "state" / "history.db"
    url = f"sqlite:///{db}"
    mapping = (
        "step=step,account=account,started_at=started_at,duration_s=duration_s,quantity=quantity"
    )
    done = planner("import", "csv", folder / "t.csv", "--pipeline", "t", "--map", mapping,
                   "--db", url, cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    models = folder / "models"
    done = planner("train", "--pipeline", "t", "--db", url, "--models", models, cwd=folder)
    assert done.returncode == 0, done.stderr
    pipeline = write_pipeline(folder / "t.yaml", folder / "state")
    done = planner("plan", pipeline, "--db", url, "--models", models, "--json", cwd=folder)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    sources = {t["source"] for t in json.loads(done.stdout)["tasks"]}
    assert "model" in sources, "the intact model is used (the tests below break it)"
    return {"db": db, "models": models, "pipeline": pipeline}


def _copy_models(trained: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the trained registry; returns (registry, folder of the live model)."""
    models = tmp_path / "models"
    shutil.copytree(trained["models"], models)
    live = (models / "t" / "current").read_text(encoding="utf-8").strip()
    return models, models / "t" / live


@pytest.mark.parametrize("how", ["tampered", "truncated", "rehashed", "bad-card"])
def test_plan_warns_on_one_line_and_uses_baselines(
    how: str, trained: dict[str, Path], tmp_path: Path
) -> None:
    models, live = _copy_models(trained, tmp_path)
    url = f"sqlite:///{trained['db']}"
    args = ("plan", trained["pipeline"], "--db", url, "--models", models)
    _corrupt(live, how)
    done = planner(*args, "--json", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"planner: warning: model {live.name}: ")
    assert lines[0].endswith("; using baselines")
    expected = {
        "tampered": "does not match the card",
        "truncated": "does not match the card",
        "rehashed": "not trusted",
        "bad-card": "card is not valid JSON",
    }[how]
    assert expected in lines[0]
    sources = {t["source"] for t in json.loads(done.stdout)["tasks"]}
    assert "model" not in sources and sources, sources
    if how == "truncated":  # human output: the same single warning line, on stderr
        done = planner(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stderr.strip() == lines[0], done.stderr
        assert "Traceback" not in done.stdout


def test_models_verify_reports_each_broken_file(trained: dict[str, Path], tmp_path: Path) -> None:
    models, live = _copy_models(trained, tmp_path)
    for how in ("tampered", "truncated", "bad-card"):
        shutil.copytree(live, live.with_name(f"{live.name}-{how}"))
        _corrupt(live.with_name(f"{live.name}-{how}"), how)
    url = f"sqlite:///{trained['db']}"
    done = planner("models", "--verify", "--json", "--models", models, "--db", url, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    found = {m["id"]: m for m in json.loads(done.stdout)["models"]}
    assert found[live.name]["verified"] is True
    assert "does not match the card" in found[f"{live.name}-tampered"]["problem"]
    assert "does not match the card" in found[f"{live.name}-truncated"]["problem"]
    assert "card is not valid JSON" in found[f"{live.name}-bad-card"]["problem"]
    assert not any(found[f"{live.name}-{h}"]["verified"] for h in ("tampered", "truncated"))


def test_train_replaces_a_broken_live_model_with_one_line_note(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    models, live = _copy_models(trained, tmp_path)
    _corrupt(live, "truncated")
    url = f"sqlite:///{trained['db']}"
    done = planner("train", "--pipeline", "t", "--db", url, "--models", models, cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr + done.stdout, done.stderr
    notes = [line for line in done.stdout.splitlines() if f"current model {live.name}" in line]
    assert len(notes) == 1, done.stdout
    assert notes[0].startswith("note: ") and notes[0].endswith(
        "(file changed or truncated)): replaced"
    )
    assert (models / "t" / "current").read_text(encoding="utf-8").strip() != live.name


# -- (c) a database that cannot be used --------------------------------------------------------


def _not_a_database(tmp_path: Path) -> str:
    (tmp_path / "h.db").write_text("these are notes, not a database\n", encoding="utf-8")
    return f"sqlite:///{tmp_path / 'h.db'}"


def _random_bytes(tmp_path: Path) -> str:
    (tmp_path / "h.db").write_bytes(bytes(range(256)) * 64)
    return f"sqlite:///{tmp_path / 'h.db'}"


def _unknown_version(tmp_path: Path) -> str:
    db = tmp_path / "h.db"
    run_ok(write_pipeline(tmp_path / "v.yaml", tmp_path / "state"), tmp_path)
    shutil.copy(tmp_path / "state" / "history.db", db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE planner_meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    return f"sqlite:///{db}"


def _under_a_file(tmp_path: Path) -> str:
    (tmp_path / "f").write_text("", encoding="utf-8")
    return f"sqlite:///{tmp_path / 'f' / 'h.db'}"


BAD_DATABASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "not-a-database": (_not_a_database, "file is not a database"),
    "random-bytes": (_random_bytes, "file is not a database"),
    "schema-99": (
        _unknown_version,
        "the history has schema version 99; this planner knows versions up to 5: upgrade planner "
        "to read it",
    ),
    "unreachable-server": (
        lambda _p: "postgresql://planner:secret@127.0.0.1:1/history",
        "connection failed",
    ),
    "not-a-url": (lambda _p: "history.db", "not a database URL"),
    "unknown-dialect": (lambda _p: "nosuchdb://host/x", "cannot use this database"),
    "folder-is-a-file": (_under_a_file, "cannot create the folder"),
}


@pytest.mark.parametrize("case", list(BAD_DATABASES))
def test_run_on_a_database_that_cannot_be_used(case: str, tmp_path: Path) -> None:
    make, expected = BAD_DATABASES[case]
    url = make(tmp_path)
    files = {p: p.read_bytes() for p in tmp_path.glob("*.db")}
    pipeline = write_pipeline(tmp_path / "p.yaml", tmp_path / "other-state")
    where, what = one_error(planner("run", pipeline, "--db", url, cwd=tmp_path))
    assert expected in what, what
    assert "secret" not in where + what  # the password is masked
    assert where == url.replace("secret", "***")
    assert {p: p.read_bytes() for p in tmp_path.glob("*.db")} == files  # untouched
    assert not (tmp_path / "other-state" / "logs").exists()  # nothing was started


@pytest.mark.parametrize("case", ["not-a-database", "schema-99"])
def test_reading_and_importing_refuse_it_too(case: str, tmp_path: Path) -> None:
    make, expected = BAD_DATABASES[case]
    url = make(tmp_path)
    before = (tmp_path / "h.db").read_bytes()
    csv = write_csv(tmp_path / "x.csv", 10)
    for args in (("runs", "--json"), ("import", "csv", csv, *CSV_MAP)):
        done = planner(*args, "--db", url, cwd=tmp_path)
        where, what = one_error(done)
        assert (where, what) == (url, expected)
        assert done.stdout == ""
    assert (tmp_path / "h.db").read_bytes() == before
    if case == "schema-99":
        assert history(tmp_path / "h.db")["version"] == "99"


# -- (d) an invalid pipeline -------------------------------------------------------------------


def test_run_of_an_invalid_pipeline_lists_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bad name!",
                "state_dir": str(tmp_path / "state"),
                "concurrency": {"max": 0},
                "steps": [
                    {"id": "a", "command": ["true"], "depends_on": ["zz"], "timeout": "soon"},
                    {"id": "b", "depends_on": ["c"]},
                    {"id": "c", "command": ["true"], "depends_on": ["b"], "retry": "nope"},
                ],
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    done = planner("run", path, "--db", f"sqlite:///{tmp_path / 'h.db'}", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    prefix = f"planner: error: {path}: "
    assert all(line.startswith(prefix) for line in lines), lines
    fields = sorted(line[len(prefix) :].split(":")[0] for line in lines)
    assert fields == sorted(
        [
            "name",
            "concurrency.max",
            "steps[0].timeout",
            "steps[0].depends_on[0]",
            "steps[1].command",
            "steps[2].retry",
            "steps",  # the dependency cycle b -> c -> b
        ]
    ), lines
    assert any("dependency cycle" in line for line in lines)
    assert f"{prefix}steps: dependency cycle: b -> c -> b" in lines
    assert not (tmp_path / "state").exists() and not (tmp_path / "h.db").exists()


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("name: t\nsteps: [\n", (), "invalid YAML at line 3"),
        (None, (), "file not found"),
        ("", ("--steps", "nosuch"), "--steps: unknown step 'nosuch' (known: a, b)"),
    ],
    ids=["yaml-syntax", "missing-file", "unknown-step"],
)
def test_run_of_an_unusable_pipeline_file(
    text: str | None, args: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    if text == "":
        write_pipeline(path, tmp_path / "state")
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    db = tmp_path / "h.db"
    where, what = one_error(planner("run", path, *args, "--db", f"sqlite:///{db}", cwd=tmp_path))
    assert expected in f"{where}: {what}"
    if text != "":
        assert where == str(path)
    assert not (tmp_path / "state" / "logs").exists()
    if db.exists():  # the history may have been opened, but no run was recorded
        assert history(db)["runs"] == {}
