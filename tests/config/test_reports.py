"""Reports a new user met: each problem once, at the place the parser means."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from planner.config import check_pipeline_file, load_pipeline

Write = Callable[..., Path]


def errors_of(path: Path) -> list[tuple[str, str]]:
    pipeline, issues = check_pipeline_file(path)
    assert pipeline is None, "expected the pipeline to be invalid"
    return [(i.loc, i.msg) for i in issues]


# --- a. a missing accounts file is one error, not one more per per-account step -----------


def test_missing_accounts_file_is_reported_once(write_pipeline: Write, tmp_path: Path) -> None:
    text = (
        "name: p\naccounts_file: nope.txt\nsteps:\n"
        "  - {id: '1', command: [x], per_account: true}\n"
        "  - {id: '2', command: [x], per_account: true, depends_on: '1'}\n"
    )
    assert errors_of(write_pipeline(text)) == [
        ("accounts_file", f"file not found: {tmp_path / 'nope.txt'}")
    ]


def test_empty_accounts_file_is_reported_once(write_pipeline: Write, tmp_path: Path) -> None:
    (tmp_path / "accts.txt").write_text("# nobody yet\n")
    text = (
        "name: p\naccounts_file: accts.txt\n"
        "steps:\n  - {id: '1', command: [x], per_account: true}\n"
    )
    assert errors_of(write_pipeline(text)) == [
        ("accounts_file", f"no accounts in {tmp_path / 'accts.txt'}")
    ]


def test_empty_accounts_file_path_is_an_error(write_pipeline: Write) -> None:
    # it used to resolve to the pipeline's folder and quietly give no accounts
    text = "name: p\naccounts_file: ''\nsteps:\n  - {id: '1', command: [x]}\n"
    assert errors_of(write_pipeline(text)) == [
        ("accounts_file", "empty path: name the accounts file")
    ]


def test_per_account_without_any_accounts_is_still_reported(write_pipeline: Write) -> None:
    text = "name: p\nsteps:\n  - {id: '1', command: [x], per_account: true}\n"
    assert [loc for loc, _ in errors_of(write_pipeline(text))] == ["steps[0].per_account"]


# --- b. YAML syntax errors: the parser's line and column, and where the construct began --


BROKEN = [
    # (text, line:column of the problem, where the unclosed construct began or None)
    ("name: p\nsteps:\n  - id: 1\n    command: [x\n  - id: 2\n", "5, column 7", "4, column 14"),
    ('name: p\ndescription: "abc\nsteps:\n  - id: 1\n', "5, column 1", "2, column 14"),
    ("name: p\n\n\nsteps:\n  - id: 1\n    command: a: b\n", "6, column 15", None),
    ("name: p\r\nsteps:\r\n  - id: 1\r\n    command: [x\r\n  - id: 2\r\n", "5, column 7", "4"),
    ("\ufeffname: p\nsteps:\n\t- id: 1\n", "3, column 1", None),
    ("# header\n---\nname: p\nsteps: {a: [1, 2}\n", "4, column 17", "4, column 12"),
]


@pytest.mark.parametrize(("text", "at", "began"), BROKEN)
def test_yaml_errors_point_at_the_parsers_line(
    write_pipeline: Write, text: str, at: str, began: str | None
) -> None:
    path = write_pipeline(text)
    # the reference: yaml's own 0-based problem mark on the same bytes, made 1-based
    with pytest.raises(yaml.MarkedYAMLError) as caught:
        yaml.safe_load(path.read_bytes())
    mark = caught.value.problem_mark
    assert mark is not None
    assert at == f"{mark.line + 1}, column {mark.column + 1}"
    [(loc, msg)] = errors_of(path)
    assert loc == ""
    assert msg.startswith(f"invalid YAML at line {at}: {caught.value.problem}")
    if began is None:
        assert "(" not in msg.removeprefix(f"invalid YAML at line {at}: ")
    else:
        assert f" at line {began}" in msg.split(caught.value.problem or "", 1)[1]


def test_unclosed_quote_names_the_line_it_opened_on(write_pipeline: Write) -> None:
    text = 'name: p\ndescription: "abc\nsteps:\n  - id: 1\n'
    [(_, msg)] = errors_of(write_pipeline(text))
    assert msg == (
        "invalid YAML at line 5, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 2, column 14)"
    )


def test_yaml_error_as_one_line_from_a_real_process(write_pipeline: Write) -> None:
    path = write_pipeline("name: p\nsteps:\n  - id: 1\n    command: [x\n  - id: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "planner", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"planner: error: {path}: invalid YAML at line 5, column 7: expected ',' or ']', "
        "but got ':' (while parsing a flow sequence at line 4, column 14)\n"
    )


# --- c. one bad field in a one-step file is one error, not a second about `steps` --------


@pytest.mark.parametrize(
    ("quantity", "fragment"),
    [
        (2.5, "got a number with a fractional part: 2.5"),
        (-1, "greater than or equal to 0, got -1"),
        ("many", "'many'"),
    ],
)
def test_bad_quantity_is_one_error(write_pipeline: Write, quantity: object, fragment: str) -> None:
    data = {"name": "p", "steps": [{"id": "1", "command": ["x"], "quantity": quantity}]}
    errors = errors_of(write_pipeline(data))
    assert len(errors) == 1, errors
    assert errors[0][0] == "steps[0].quantity" and fragment in errors[0][1]
    assert ", got " not in errors[0][1].split(", got ", 1)[1]  # "got" said once


def test_whole_quantity_written_as_a_float_is_fine(write_pipeline: Write) -> None:
    data = {"name": "p", "steps": [{"id": "1", "command": ["x"], "quantity": 2.0}]}
    assert load_pipeline(write_pipeline(data)).steps[0].quantity == 2


def test_no_steps_at_all_is_still_an_error(write_pipeline: Write) -> None:
    assert errors_of(write_pipeline({"name": "p", "steps": []})) == [
        ("steps", "a pipeline needs at least one step")
    ]


# --- a command list with a bad word: one error at the word, not one more for "string" ----


def test_bad_word_in_a_command_list_is_one_error(write_pipeline: Write) -> None:
    text = "name: p\nsteps:\n  - {id: a, command: [x, [nested]]}\n"
    assert errors_of(write_pipeline(text)) == [
        ("steps[0].command[1]", "Input should be a valid string")
    ]


def test_a_command_of_the_wrong_kind_names_both_forms(write_pipeline: Write) -> None:
    text = "name: p\nsteps:\n  - {id: a, command: 5}\n"
    [(loc, msg)] = errors_of(write_pipeline(text))
    assert loc == "steps[0].command"
    assert "valid tuple" in msg and "valid string" in msg


def test_bare_true_in_a_command_is_the_word(write_pipeline: Write) -> None:
    text = "name: p\nsteps:\n  - {id: a, command: [true]}\n  - {id: b, command: [echo, false]}\n"
    pipeline = load_pipeline(write_pipeline(text))
    assert pipeline.steps[0].command == ("true",)
    assert pipeline.steps[1].command == ("echo", "false")
