"""`planner validate` and the pipeline checks behind it: every error, in one report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from planner.cli import main
from planner.config import check_pipeline_file, load_pipeline, select_steps
from planner.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "data" / "examples"

Write = Callable[..., Path]


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "p", "steps": [{"id": "1", "command": ["true"]}]}
    data.update(extra)
    return data


def errors_of(path: Path) -> list[tuple[str, str]]:
    pipeline, issues = check_pipeline_file(path)
    assert pipeline is None, "expected the pipeline to be invalid"
    return [(i.loc, i.msg) for i in issues]


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- valid files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["example.yaml", "example.json", "example.toml", "nightly.yaml"])
def test_examples_are_valid(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An absent history, not the one a local run may have left in the examples' state dir.
    absent = tmp_path / "absent.db"
    db = ("--db", f"sqlite:///{absent}", "--models", str(tmp_path / "models"))
    code, out, err = run_cli("validate", str(EXAMPLES / name), *db, capsys=capsys)
    assert code == 0, err
    assert out.startswith(f"{EXAMPLES / name}: valid pipeline ")
    assert out.endswith("  estimate: no history yet (run it once, then validate again)\n")
    assert err == ""
    assert not absent.exists()  # validating does not create a history


def test_three_formats_give_the_same_pipeline() -> None:
    loaded = [load_pipeline(EXAMPLES / f"example.{ext}") for ext in ("yaml", "json", "toml")]
    dumps = [p.model_dump() for p in loaded]
    assert dumps[0] == dumps[1] == dumps[2]


def test_nightly_example_is_a_real_multi_step_job() -> None:
    pipeline = load_pipeline(EXAMPLES / "nightly.yaml")
    assert len(pipeline.steps) >= 20
    assert any(s.per_account for s in pipeline.steps)
    assert pipeline.retry_policies["standard"].on["network_error"].max_retries == 3
    assert pipeline.account_list[:2] == ("acct-001", "acct-002")
    order = [s.id for s in select_steps(pipeline)]
    for step in pipeline.steps:
        for dep in step.depends_on:
            assert order.index(dep) < order.index(step.id)


def test_only_name_and_steps_are_required(write_pipeline: Write) -> None:
    pipeline = load_pipeline(write_pipeline(minimal()))
    assert pipeline.schedule.quantile == 0.95
    assert pipeline.schedule.policy == "predicted"
    assert pipeline.alerts.warning == 0.8
    assert pipeline.alerts.critical == 1.0
    assert pipeline.lease_ttl == 60
    assert pipeline.concurrency.max == "auto"
    assert pipeline.steps[0].per_account is False
    assert pipeline.steps[0].name is None


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "accts.txt").write_text("# comment\nalpha\n\nbeta  # trailing\n")
    (folder / "p.yaml").write_text(
        "name: p\naccounts_file: accts.txt\nstate_dir: state\n"
        "steps:\n  - {id: a, command: [x, '{account}'], per_account: true, cwd: work}\n"
    )
    pipeline = load_pipeline(folder / "p.yaml")
    assert pipeline.account_list == ("alpha", "beta")
    assert pipeline.state_dir == folder / "state"
    assert pipeline.steps[0].cwd == folder / "work"


def test_durations_sizes_and_ids_in_every_form(write_pipeline: Write) -> None:
    data = minimal(
        lease_ttl="2s",
        schedule={"cadence": "PT36H", "max_interval": "3d"},
        concurrency={"max": 4, "memory_per_task": "1.5GiB"},
    )
    data["steps"] = [
        {"id": 1, "command": ["x"], "timeout": "0.2s"},
        {"id": "2", "command": ["y"], "depends_on": [1]},
    ]
    pipeline = load_pipeline(write_pipeline(data))
    assert pipeline.schedule.cadence == 36 * 3600
    assert pipeline.concurrency.memory_per_task == int(1.5 * 1024**3)
    assert pipeline.steps[0].id == "1" and pipeline.steps[1].depends_on == ("1",)
    assert pipeline.steps[0].timeout == pytest.approx(0.2)


def test_yaml_on_key_is_not_a_boolean(write_pipeline: Write) -> None:
    text = (
        "name: p\nretry_policies:\n  r:\n    on:\n      default: {max_retries: 2}\n"
        "steps:\n  - {id: a, command: [x], retry: r}\n"
    )
    pipeline = load_pipeline(write_pipeline(text))
    assert pipeline.retry_policies["r"].on["default"].max_retries == 2


def test_shell_string_with_shell_true_is_valid(write_pipeline: Write) -> None:
    data = minimal()
    data["steps"] = [{"id": "1", "command": "echo {quantity} | wc -c", "shell": True}]
    assert load_pipeline(write_pipeline(data)).steps[0].command == "echo {quantity} | wc -c"


# --- each check, with the offending value named ------------------------------------------


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "duplicate step id",
        {"steps": [{"id": "1", "command": ["x"]}, {"id": "1", "command": ["y"]}]},
        "steps[1].id",
        "duplicate step id '1'",
    ),
    (
        "unknown dependency",
        {"steps": [{"id": "1", "command": ["x"], "depends_on": ["99"]}]},
        "steps[0].depends_on[0]",
        "unknown step '99'",
    ),
    (
        "self dependency",
        {"steps": [{"id": "7", "command": ["x"], "depends_on": ["7"]}]},
        "steps[0].depends_on[0]",
        "step '7' depends on itself",
    ),
    (
        "cycle",
        {
            "steps": [
                {"id": "1", "command": ["x"], "depends_on": ["21"]},
                {"id": "21", "command": ["x"], "depends_on": ["1"]},
            ]
        },
        "steps",
        "dependency cycle: 1 -> 21 -> 1",
    ),
    (
        "unknown placeholder",
        {"steps": [{"id": "1", "command": ["x", "{acount}"], "params": {"region": "eu"}}]},
        "steps[0].command[1]",
        "unknown placeholder {acount} in '{acount}' "
        "(known: account, quantity, step, run_id, region)",
    ),
    (
        "per-account without accounts",
        {"steps": [{"id": "1", "command": ["x"], "per_account": True}]},
        "steps[0].per_account",
        "step '1' runs per account but the pipeline has no accounts",
    ),
    (
        "duplicate account",
        {"accounts": ["a", "b", "a"]},
        "accounts[2]",
        "duplicate account 'a'",
    ),
    (
        "zero timeout",
        {"steps": [{"id": "1", "command": ["x"], "timeout": 0}]},
        "steps[0].timeout",
        "must be a positive duration, got 0",
    ),
    (
        "negative timeout",
        {"steps": [{"id": "1", "command": ["x"], "timeout": "-5s"}]},
        "steps[0].timeout",
        "not a duration: '-5s'",
    ),
    ("zero cadence", {"schedule": {"cadence": "0s"}}, "schedule.cadence", "positive duration"),
    (
        "negative quantity",
        {"steps": [{"id": "1", "command": ["x"], "quantity": -3}]},
        "steps[0].quantity",
        "greater than or equal to 0, got -3",
    ),
    ("quantile out of range", {"schedule": {"quantile": 1.5}}, "schedule.quantile", "1.5"),
    ("negative margin", {"schedule": {"min_margin": -0.1}}, "schedule.min_margin", "-0.1"),
    (
        "unknown retry policy",
        {
            "retry_policies": {"standard": {}},
            "steps": [{"id": "1", "command": ["x"], "retry": "standrd"}],
        },
        "steps[0].retry",
        "unknown retry policy 'standrd' (known: standard)",
    ),
    (
        "shell string without shell",
        {"steps": [{"id": "1", "command": "echo hi"}]},
        "steps[0].command",
        "a command string needs shell: true",
    ),
    ("missing accounts file", {"accounts_file": "nope.txt"}, "accounts_file", "file not found"),
    (
        "misspelt key",
        {"steps": [{"id": "1", "command": ["x"], "dependson": ["2"]}]},
        "steps[0].dependson",
        "unknown key 'dependson' (did you mean 'depends_on'?)",
    ),
    ("missing steps", {"steps": None}, "steps", "valid"),
    (
        "missing command",
        {"steps": [{"id": "1"}]},
        "steps[0].command",
        "required key is missing",
    ),
    (
        "unknown error class",
        {"retry_policies": {"r": {"on": {"netwrk": {"max_retries": 1}}}}},
        "retry_policies.r.on.netwrk",
        "unknown error class 'netwrk'",
    ),
    ("bad cron", {"schedule": {"cron": "61 * * *"}}, "schedule.cron", "bad cron expression"),
    ("cron never fires", {"schedule": {"cron": "0 0 30 2 *"}}, "schedule.cron", "never fires"),
    ("bad name", {"name": "has space"}, "name", "pattern"),
]


@pytest.mark.parametrize(("label", "change", "loc", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_each_check_names_field_and_value(
    write_pipeline: Write, label: str, change: dict[str, Any], loc: str, fragment: str
) -> None:
    data = minimal(**change)
    errors = errors_of(write_pipeline(data))
    assert any(at == loc and fragment in m for at, m in errors), f"{label}: got {errors}"


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_every_error_is_reported_at_once_in_every_format(
    write_pipeline: Write, suffix: str
) -> None:
    data = {
        "name": "p",
        "accounts": ["a", "a"],
        "steps": [
            {"id": "1", "command": ["x"], "quantity": -1},
            {"id": "2", "command": ["y", "{nope}"], "depends_on": ["9"]},
        ],
    }
    errors = errors_of(write_pipeline(data, name="p" + suffix))
    locs = {loc for loc, _ in errors}
    assert {
        "steps[0].quantity",
        "steps[1].depends_on[0]",
        "steps[1].command[1]",
        "accounts[1]",
    } <= locs
    assert len(errors) == 4, errors  # each problem once, nothing else


def test_duplicate_account_in_accounts_file(write_pipeline: Write, tmp_path: Path) -> None:
    (tmp_path / "accts.txt").write_text("a\nb\na\n")
    errors = errors_of(write_pipeline(minimal(accounts_file="accts.txt")))
    assert errors == [
        ("accounts_file", "accts.txt line 3: duplicate account 'a' (first on line 1)")
    ]


# --- unreadable and malformed files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("p.yaml", "name: p\nsteps: [\n  - id: 1\n", "invalid YAML at line"),
        ("p.json", '{"name": "p",\n "steps": [}', "invalid JSON at line 2, column"),
        ("p.toml", 'name = "p"\nsteps = [\n  = 3\n', "invalid TOML: at line"),
        ("p.yaml", "", "file is empty"),
        ("p.yaml", "   \n# only a comment\n", "file is empty"),
        ("p.yaml", "- a\n- b\n", "top level must be a mapping"),
        ("p.json", "[1, 2]", "top level must be a mapping"),
        ("p.txt", "name: p", "unknown file type"),
    ],
)
def test_malformed_files_give_one_clean_line(
    tmp_path: Path, name: str, text: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"planner: error: {path}: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli("validate", str(tmp_path / "none.yaml"), capsys=capsys)
    assert code == 2 and "file not found" in err
    (tmp_path / "d.yaml").mkdir()
    code, _, err = run_cli("validate", str(tmp_path / "d.yaml"), capsys=capsys)
    assert code == 2 and "is a directory" in err


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    code, _, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 2 and "not UTF-8" in err


# --- selections ------------------------------------------------------------------------------


def _chain(write_pipeline: Write) -> Path:
    data = minimal()
    data["steps"] = [
        {"id": "1", "command": ["x"]},
        {"id": "21", "command": ["x"], "depends_on": ["1"]},
        {"id": "3", "command": ["x"], "depends_on": ["21"]},
        {"id": "4", "command": ["x"]},
    ]
    return write_pipeline(data)


def test_selection_missing_dependency_is_an_error(write_pipeline: Write) -> None:
    pipeline = load_pipeline(_chain(write_pipeline))
    with pytest.raises(ConfigError) as caught:
        select_steps(pipeline, ["3"])
    assert "step '3' depends on '21', which is not selected" in caught.value.lines()[0]


def test_selection_with_deps_in_dependency_order(write_pipeline: Write) -> None:
    pipeline = load_pipeline(_chain(write_pipeline))
    assert [s.id for s in select_steps(pipeline, ["3"], with_deps=True)] == ["1", "21", "3"]
    assert [s.id for s in select_steps(pipeline, ["3", "21", "1"])] == ["1", "21", "3"]


def test_selection_unknown_step(write_pipeline: Write) -> None:
    pipeline = load_pipeline(_chain(write_pipeline))
    with pytest.raises(ConfigError, match="unknown step '8'"):
        select_steps(pipeline, ["8"])


def test_validate_cli_selection_json(
    write_pipeline: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _chain(write_pipeline)
    code, out, _ = run_cli("validate", str(path), "--steps", "3", "--json", capsys=capsys)
    assert code == 2
    doc = json.loads(out)
    assert doc["valid"] is False and doc["errors"][0]["loc"] == "--steps"
    code, out, _ = run_cli(
        "validate", str(path), "--steps", "3", "--with-deps", "--json", capsys=capsys
    )
    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "errors": [],
        "order": ["1", "21", "3"],
        "levels": [["1"], ["21"], ["3"]],
    }


def test_validate_json_lists_every_error(
    write_pipeline: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_pipeline(minimal(accounts=["a", "a"], schedule={"quantile": 2}))
    code, out, err = run_cli("validate", str(path), "--json", capsys=capsys)
    assert code == 2 and err == ""
    doc = json.loads(out)
    assert doc["valid"] is False and doc["order"] == [] and doc["levels"] == []
    assert {e["loc"] for e in doc["errors"]} == {"accounts[1]", "schedule.quantile"}


def test_validate_as_a_real_process(write_pipeline: Write) -> None:
    path = write_pipeline(minimal(accounts=["a", "a"]))
    done = subprocess.run(
        [sys.executable, "-m", "planner", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"planner: error: {path}: accounts[1]: duplicate account 'a' (also accounts[0])"
    )


def test_env_values_written_bare_are_text(write_pipeline: Write) -> None:
    data = minimal()
    data["steps"] = [{"id": "1", "command": ["x"], "env": {"THREADS": 4, "DEBUG": True, "N": "x"}}]
    env = load_pipeline(write_pipeline(data)).steps[0].env
    assert env == {"THREADS": "4", "DEBUG": "true", "N": "x"}


def test_bare_numbers_in_commands_and_a_single_dependency(write_pipeline: Write) -> None:
    text = (
        "name: p\nsteps:\n  - {id: a, command: [sleep, 0.5]}\n"
        "  - {id: b, command: [echo, 5], depends_on: a}\n"
    )
    pipeline = load_pipeline(write_pipeline(text))
    assert pipeline.steps[0].command == ("sleep", "0.5")
    assert pipeline.steps[1].depends_on == ("a",)


def test_a_single_dependency_still_finds_cycles(write_pipeline: Write) -> None:
    text = (
        "name: p\nsteps:\n  - {id: a, command: [x], depends_on: b}\n"
        "  - {id: b, command: [x], depends_on: a}\n"
    )
    assert ("steps", "dependency cycle: a -> b -> a") in errors_of(write_pipeline(text))


def test_validate_counts_the_tasks_of_the_selected_steps(
    write_pipeline: Write, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = minimal(accounts=["a", "b", "c"], state_dir=str(tmp_path / "state"))
    data["steps"] = [
        {"id": "1", "command": ["x"]},
        {"id": "2", "command": ["x"], "depends_on": ["1"], "per_account": True},
        {"id": "3", "command": ["x"], "enabled": False},
        {"id": "4", "command": ["x"]},
    ]
    path = write_pipeline(data)
    code, out, err = run_cli("validate", str(path), capsys=capsys)
    assert code == 0, err
    assert "  tasks per run: 5\n" in out  # 1 + 3 accounts + 1; the disabled step is not run
    code, out, err = run_cli("validate", str(path), "--steps", "2", "--with-deps", capsys=capsys)
    assert code == 0, err
    assert "  steps: 2 in 2 levels; * per account\n    1 | 2*\n" in out
    assert "  tasks per run: 4\n" in out
