"""Reading a pipeline file (YAML, JSON or TOML) into a validated :class:`Pipeline`.

Every problem is collected and raised together in one :class:`ConfigError`: syntax errors
(with line and column), fields that fail pydantic, and the cross-field checks of
:mod:`planner.config.checks`, which run on whatever parsed.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from planner.config.checks import read_accounts_file, semantic_issues
from planner.config.models import Pipeline
from planner.errors import ConfigError, ConfigIssue

__all__ = ["SUFFIXES", "check_pipeline_file", "load_pipeline", "parse_pipeline"]

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


def load_pipeline(path: str | Path, *, as_file: Path | None = None) -> Pipeline:
    """The pipeline in ``path``; raises :class:`ConfigError` listing every problem.

    ``as_file``: the file ``path`` stands for (its folder is where relative paths start
    and tasks run; the daemon runs a saved copy of the last valid file)."""
    pipeline, issues = check_pipeline_file(path, as_file=as_file)
    if issues or pipeline is None:
        raise ConfigError(str(path), issues)
    return pipeline


def check_pipeline_file(
    path: str | Path, *, as_file: Path | None = None
) -> tuple[Pipeline | None, list[ConfigIssue]]:
    """Validate ``path`` (standing for ``as_file`` when given): the pipeline when it is
    valid, and every issue found."""
    file = Path(path)
    try:
        raw = read_raw(file)
    except ConfigError as exc:
        return None, exc.issues
    source = as_file or file
    return parse_pipeline(raw, base_dir=source.resolve().parent, source=source)


def read_raw(file: Path) -> dict[str, Any]:
    """The top-level mapping of a pipeline file; raises :class:`ConfigError` when unreadable."""
    fmt = SUFFIXES.get(file.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES))
        raise ConfigError(str(file), [ConfigIssue("", f"unknown file type (use one of {known})")])
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(file), [ConfigIssue("", "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError(str(file), [ConfigIssue("", "is a directory, not a file")]) from None
    except UnicodeDecodeError as exc:
        msg = f"not UTF-8 text (byte {exc.start})"
        raise ConfigError(str(file), [ConfigIssue("", msg)]) from None
    except OSError as exc:
        raise ConfigError(str(file), [ConfigIssue("", f"cannot read: {exc.strerror}")]) from None
    if not text.strip():
        raise ConfigError(str(file), [ConfigIssue("", "file is empty")])
    data = _parse_text(file, text, fmt)
    if data is None:
        raise ConfigError(
            str(file), [ConfigIssue("", "file is empty: it holds only comments or null")]
        )
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        msg = f"top level must be a mapping of keys (name, steps, ...), got {kind}"
        raise ConfigError(str(file), [ConfigIssue("", msg)])
    return dict(data)


def _parse_text(file: Path, text: str, fmt: str) -> object:
    def fail(msg: str) -> ConfigError:
        return ConfigError(str(file), [ConfigIssue("", msg)])

    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise fail(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise fail(f"invalid TOML: {_toml_message(exc)}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as exc:
        raise fail(f"invalid YAML{_yaml_where(exc)}") from None
    except yaml.YAMLError as exc:
        raise fail(f"invalid YAML: {exc}") from None


def _yaml_where(exc: Any) -> str:
    """`` at line L, column C: <problem>`` from a ``yaml.MarkedYAMLError``, 1-based like an
    editor, plus where the construct it was reading began when that is elsewhere: an
    unclosed quote or bracket is found only at the end of the file, lines further down."""

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    problem, context = exc.problem_mark, exc.context_mark
    if problem is None and context is None:
        return f": {exc.problem or exc.context or 'syntax error'}"
    if problem is None:
        return f" at {at(context)}: {exc.context or 'syntax error'}"
    text = f" at {at(problem)}: {exc.problem or 'syntax error'}"
    if context is not None and (context.line, context.column) != (problem.line, problem.column):
        text += f" ({exc.context or 'in the construct'} at {at(context)})"
    return text


def _yaml_loader() -> Any:
    """A SafeLoader where only true/false are booleans: ``on:`` stays the key "on"."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return Loader


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.11: "Expected '=' after a key in a key/value pair (at line 3, column 5)"
    text = str(exc)
    if text.endswith(")") and "(at line " in text:
        head, _, tail = text.rpartition(" (at ")
        return f"at {tail[:-1]}: {head}"
    return text


def parse_pipeline(
    raw: Mapping[str, Any], *, base_dir: Path, source: Path | None = None
) -> tuple[Pipeline | None, list[ConfigIssue]]:
    """Validate a raw mapping; relative paths are taken from ``base_dir``."""
    issues: list[ConfigIssue] = []
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(dict(raw))
    except ValidationError as exc:
        issues.extend(_pydantic_issues(exc))
    issues.extend(semantic_issues(raw, base_dir))
    if issues or pipeline is None:
        return None, _dedupe(issues)
    return _resolved(pipeline, base_dir, source), []


def _resolved(pipeline: Pipeline, base_dir: Path, source: Path | None) -> Pipeline:
    def absolute(path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else (base_dir / path).resolve()

    update: dict[str, Any] = {"state_dir": absolute(pipeline.state_dir), "source": source}
    if pipeline.accounts_file is not None:
        accounts_file = absolute(pipeline.accounts_file)
        update["accounts_file"] = accounts_file
        accounts, _ = read_accounts_file(accounts_file)
        update["accounts"] = tuple(accounts)
    update["steps"] = tuple(
        s.model_copy(update={"cwd": absolute(s.cwd)}) if s.cwd is not None else s
        for s in pipeline.steps
    )
    return pipeline.model_copy(update=update)


def _pydantic_issues(exc: ValidationError) -> list[ConfigIssue]:
    errors = [
        ([p for p in error["loc"] if not _is_union_tag(p)], error)
        for error in exc.errors(include_url=False)
    ]
    # A union (``command: list | str``) reports every branch: when one branch got inside
    # the value, "should be a valid string" about the value itself is noise.
    deeper = {tuple(parts[:i]) for parts, _ in errors for i in range(len(parts))}
    grouped: dict[str, list[str]] = {}
    for loc_parts, error in errors:
        if str(error["type"]).endswith("_type") and tuple(loc_parts) in deeper:
            continue
        loc = format_loc(loc_parts)
        msg = _message(error, loc_parts)
        grouped.setdefault(loc, [])
        if msg not in grouped[loc]:
            grouped[loc].append(msg)
    issues = []
    for loc, found in grouped.items():
        literals = [m for m in found if m.startswith("Input should be '")]
        others = [m for m in found if m not in literals]
        msgs = found
        if literals and others:
            allowed = " or ".join(re.findall(r"'[^']*'", " ".join(literals)))
            msgs = [f"{m} (or {allowed})" for m in others]
        issues.append(ConfigIssue(loc, msgs[0] if len(msgs) == 1 else "; or ".join(msgs)))
    return issues


def _is_union_tag(part: object) -> bool:
    if not isinstance(part, str):
        return False
    return (
        part in ("str", "int", "float", "bool", "none")
        or "[" in part
        or part.startswith("function-")
        or part.startswith("literal")
    )


def _message(error: Any, loc_parts: list[Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        key = loc_parts[-1] if loc_parts else "?"
        hint = _suggest(str(key), loc_parts[:-1])
        return f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
    if kind == "missing":
        return "required key is missing"
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    if kind in {"literal_error"} or isinstance(value, dict | list):
        return msg
    if ", got " in msg:  # "..., got a number with a fractional part"
        return f"{msg}: {value!r}"
    return f"{msg}, got {value!r}"


def _suggest(key: str, parent: list[Any]) -> str | None:
    from planner.config import models

    candidates: set[str] = set()
    for model in (
        models.Pipeline,
        models.Step,
        models.Schedule,
        models.Concurrency,
        models.Alerts,
        models.AlertSink,
        models.AutoTimeout,
        models.MemoryPressure,
        models.RetryPolicy,
        models.RetryAction,
        models.RetryRule,
    ):
        candidates.update(model.model_fields)
    candidates.discard("source")
    candidates.discard(key)
    matches = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.75)
    return matches[0] if matches else None


def format_loc(parts: list[Any] | tuple[Any, ...]) -> str:
    """``("steps", 0, "command")`` as ``steps[0].command``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _dedupe(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        key = (issue.loc, issue.msg)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
