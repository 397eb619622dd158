"""The systemd files in data/deploy and the README's "Run it as a service" section: the
units parse, run the daemon and the retraining as documented, hold no secret, and every
``planner <command> --flag`` they mention is an option of that command."""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
from pathlib import Path

import pytest

from planner import defaults
from planner.cli import build_parser
from planner.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "data" / "deploy"
UNITS = ("planner-daemon.service", "planner-retrain.service", "planner-retrain.timer")
SECTION = "## Run it as a service"

# a mention: `planner <word>` (also /path/to/planner <word>), then what follows it up to
# a backtick, quote, pipe, semicolon, the end of a sentence or the next `planner `
_MENTION = re.compile(r"(?:^|(?<=[\s`'\"(/]))planner\s+([a-z][a-z-]*)")
_END = re.compile(r"[`'\"|;]|\.(?:\s|$)|(?<![\w/])planner\s")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_SECRETS = (
    re.compile(r"(?i)\w*(password|passwd|token|secret|api_key)\s*=\s*\S"),
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # scheme://user:pass@host
)


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    parser.read_string((DEPLOY / name).read_text(), source=name)
    return parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("planner has no subcommands")


def _planner_argv(exec_start: str) -> list[str]:
    """The arguments after the planner executable in an ``ExecStart=`` line (through
    ``/bin/sh -c 'exec ...'`` when the line needs a shell for its glob)."""
    argv = shlex.split(exec_start)
    if Path(argv[0]).name in {"sh", "bash"} and argv[1] == "-c":
        argv = shlex.split(argv[2])
    if argv[0] == "exec":
        argv = argv[1:]
    assert Path(argv[0]).name == "planner", exec_start
    return argv[1:]


def _fragments(text: str, *, markdown: bool) -> list[str]:
    """Pieces of text that read as one: a line of a code block (with its ``\\``
    continuations), a paragraph of prose or of comments, a unit file's setting."""
    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append(" ".join(buf))
            buf.clear()

    in_code = False
    for raw in text.splitlines():
        line = raw.strip()
        if markdown and line.startswith("```"):
            flush()
            in_code = not in_code
        elif in_code:
            buf.append(line.removesuffix("\\"))
            if not line.endswith("\\"):
                flush()
        elif not line:
            flush()
        elif markdown or line.startswith(("#", ";")):
            buf.append(line.lstrip("#; "))
        else:
            flush()
            out.append(line)
    flush()
    return out


def _mentions(text: str, *, markdown: bool) -> list[tuple[str, list[str], str]]:
    """Every ``planner <command> --flag ...``: (command, flags, the text mentioned)."""
    found = []
    for fragment in _fragments(text, markdown=markdown):
        for match in _MENTION.finditer(fragment):
            rest = fragment[match.end() :]
            end = _END.search(rest)
            scope = rest[: end.start()] if end else rest
            found.append((match.group(1), _FLAG.findall(scope), match.group(0) + scope))
    return found


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1]
    return body.split("\n## ", 1)[0]


def _texts() -> list[tuple[str, str, bool]]:
    files = [(p.name, p.read_text(), p.suffix == ".md") for p in sorted(DEPLOY.iterdir())]
    return [*files, ("README.md: " + SECTION, _readme_section(), True)]


def test_the_deploy_folder_has_the_three_units_and_a_readme() -> None:
    names = {p.name for p in DEPLOY.iterdir()}
    assert set(UNITS) | {"README.md"} <= names
    readme = (DEPLOY / "README.md").read_text()
    for name in UNITS:
        assert name in readme
    for command in ("systemctl daemon-reload", "enable --now", "journalctl -u planner-daemon"):
        assert command in readme


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_parses_as_a_systemd_ini_file(name: str) -> None:
    unit = _unit(name)
    assert unit.has_section("Unit") and unit["Unit"].get("Description")
    kind = "Timer" if name.endswith(".timer") else "Service"
    assert unit.has_section(kind)
    assert unit.has_section("Install") == (name != "planner-retrain.service")


def test_the_daemon_unit_runs_planner_daemon_with_json_logs_and_reloads_on_hup() -> None:
    service = _unit("planner-daemon.service")["Service"]
    exec_start = service["ExecStart"]
    assert re.search(r"\bplanner daemon\b", exec_start)
    argv = _planner_argv(exec_start)
    args = build_parser().parse_args(argv)
    assert args.command == "daemon" and args.log_json and args.pipelines
    # the history's URL comes from the environment file, never the command line
    assert "--db" not in argv and "PLANNER_DB" not in exec_start
    assert service["EnvironmentFile"].lstrip("-") == "/etc/planner/planner.env"
    assert re.fullmatch(r"/bin/kill -HUP \$MAINPID", service["ExecReload"])
    assert service["KillMode"] == "mixed"
    assert service["Restart"] == "on-failure"
    assert parse_duration(service["TimeoutStopSec"]) > defaults.DAEMON_STOP_GRACE_S
    assert service["User"] not in {"", "root"}
    assert service["StateDirectory"] == "planner"
    assert service["ProtectSystem"] == "strict"


def test_the_retrain_service_is_a_oneshot_planner_train_json() -> None:
    service = _unit("planner-retrain.service")["Service"]
    assert service["Type"] == "oneshot"
    argv = _planner_argv(service["ExecStart"])
    args = build_parser().parse_args(argv)
    assert args.command == "train" and args.json
    assert "--db" not in argv
    assert service["User"] not in {"", "root"}


def test_the_timer_retrains_nightly_and_catches_up() -> None:
    timer = _unit("planner-retrain.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 03:00:00"
    assert timer["Persistent"] == "true"
    assert parse_duration(timer["RandomizedDelaySec"]) > 0
    assert timer.get("Unit", "planner-retrain.service") == "planner-retrain.service"
    assert _unit("planner-retrain.timer")["Install"]["WantedBy"] == "timers.target"


@pytest.mark.parametrize("name", [*UNITS, "README.md"])
def test_no_deploy_file_holds_a_secret(name: str) -> None:
    text = (DEPLOY / name).read_text()
    for pattern in _SECRETS:
        assert not pattern.search(text), f"{name}: {pattern.search(text)}"


def test_the_secret_patterns_catch_secrets() -> None:
    for text in ("PGPASSWORD=hunter2", "API_TOKEN=abc", "postgresql://user:pass@db/x"):
        assert any(p.search(text) for p in _SECRETS), text
    for text in (
        "PLANNER_DB=postgresql+psycopg://planner@db.example.org/planner",
        "http://127.0.0.1:9464/metrics",
        "password_env: SMTP_PASSWORD",
    ):
        assert not any(p.search(text) for p in _SECRETS), text


def test_every_planner_flag_mentioned_is_an_option_of_its_command() -> None:
    commands = _subcommands()
    seen: set[tuple[str, str]] = set()
    problems = []
    for where, text, markdown in _texts():
        for command, flags, mention in _mentions(text, markdown=markdown):
            if command not in commands:
                if flags:
                    problems.append(f"{where}: {mention!r}: no command {command!r}")
                continue
            options = commands[command]._option_string_actions
            for flag in flags:
                seen.add((command, flag))
                if flag not in options:
                    problems.append(f"{where}: {mention!r}: planner {command} has no {flag}")
    assert not problems, "\n".join(problems)
    # the scan sees what the files say (it is not vacuous)
    assert {("daemon", "--log-json"), ("daemon", "--retrain"), ("train", "--json")} <= seen
    assert ("train", "--pipeline") in seen and ("run", "--resume") in seen


def test_the_mention_scanner_catches_a_wrong_flag() -> None:
    text = "Use `planner daemon --log-jsn x.yaml`, then planner status --json."
    found = {(c, tuple(f)) for c, f, _ in _mentions(text, markdown=True)}
    assert found == {("daemon", ("--log-jsn",)), ("status", ("--json",))}
    assert "--log-jsn" not in _subcommands()["daemon"]._option_string_actions


def test_every_flag_in_the_units_and_the_readme_section_is_a_planner_option() -> None:
    # these texts name only planner's flags, also apart from a `planner <command>` (the
    # deploy README also shows useradd's and systemd-run's: the mention scan covers it)
    options: set[str] = set()
    for command in ("daemon", "status", "run", "train"):
        options |= set(_subcommands()[command]._option_string_actions)
    texts = [(name, (DEPLOY / name).read_text()) for name in UNITS]
    texts.append((SECTION, _readme_section()))
    problems = [
        f"{where}: {flag}"
        for where, text in texts
        for flag in sorted(set(_FLAG.findall(text)))
        if flag not in options
    ]
    assert not problems, "\n".join(problems)
