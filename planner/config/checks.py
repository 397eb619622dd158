"""Cross-field checks of a pipeline file, run on the raw mapping.

pydantic skips model validators once a field fails, so these checks read the raw data
defensively: a file with a bad quantity *and* an unknown dependency reports both.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from planner import defaults
from planner.config.models import BUILTIN_PLACEHOLDERS, KNOWN_ERROR_CLASSES
from planner.config.types import one_or_many
from planner.errors import ConfigIssue
from planner.graph import find_cycle

__all__ = ["placeholders", "read_accounts_file", "semantic_issues"]


def semantic_issues(raw: Mapping[str, Any], base_dir: Path) -> list[ConfigIssue]:
    """Every cross-field problem in ``raw``, each with the path to the field."""
    issues: list[ConfigIssue] = []
    steps = [s if isinstance(s, Mapping) else {} for s in _list(raw.get("steps"))]
    has_accounts = _check_accounts(raw, base_dir, issues)
    ids = _check_step_ids(steps, issues)
    policies = raw.get("retry_policies")
    policy_names = list(policies) if isinstance(policies, Mapping) else []
    for index, step in enumerate(steps):
        loc = f"steps[{index}]"
        step_id = _text(step.get("id"))
        _check_dependencies(loc, step_id, step.get("depends_on"), ids, issues)
        _check_command(loc, step, issues)
        if step.get("per_account") is True and not has_accounts:
            issues.append(
                ConfigIssue(
                    f"{loc}.per_account",
                    f"step {step_id!r} runs per account but the pipeline has no accounts "
                    "(set accounts or accounts_file)",
                )
            )
        retry = step.get("retry")
        if isinstance(retry, str) and retry not in policy_names:
            known = ", ".join(policy_names) or "none defined"
            issues.append(
                ConfigIssue(f"{loc}.retry", f"unknown retry policy {retry!r} (known: {known})")
            )
        elif isinstance(retry, Mapping):
            _check_policy(f"{loc}.retry", retry, issues)
    if isinstance(policies, Mapping):
        for name, policy in policies.items():
            if isinstance(policy, Mapping):
                _check_policy(f"retry_policies.{name}", policy, issues)
    _check_cycles(steps, ids, issues)
    _check_schedule(raw.get("schedule"), issues)
    _check_alerts(raw.get("alerts"), issues)
    return issues


def placeholders(template: str) -> list[str]:
    """Field names used in a ``str.format`` template (``ValueError`` when malformed)."""
    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.append(field.split(".")[0].split("[")[0])
    return names


def read_accounts_file(path: Path) -> tuple[list[str], list[ConfigIssue]]:
    """Accounts in ``path``: one per line, ``#`` starts a comment, blank lines ignored."""
    accounts: list[str] = []
    issues: list[ConfigIssue] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [], [ConfigIssue("accounts_file", f"file not found: {path}")]
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ConfigIssue("accounts_file", f"cannot read {path}: {exc}")]
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        account = line.split("#", 1)[0].strip()
        if not account:
            continue
        if account in seen:
            issues.append(
                ConfigIssue(
                    "accounts_file",
                    f"{path.name} line {number}: duplicate account {account!r} "
                    f"(first on line {seen[account]})",
                )
            )
            continue
        seen[account] = number
        accounts.append(account)
    return accounts, issues


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _deps(value: object) -> list[Any]:
    """``depends_on`` as a list, by the model's rule (a bare id stands for a list of one)."""
    return _list(one_or_many(value))


def _text(value: object) -> str:
    return str(value) if value is not None else "?"


def _check_accounts(raw: Mapping[str, Any], base_dir: Path, issues: list[ConfigIssue]) -> bool:
    """Check ``accounts`` / ``accounts_file``; ``True`` when per-account steps have accounts,
    or when the accounts file is the problem (already reported once, at ``accounts_file``)."""
    accounts = raw.get("accounts")
    accounts_file = raw.get("accounts_file")
    if accounts is not None and accounts_file is not None:
        issues.append(ConfigIssue("accounts", "give either accounts or accounts_file, not both"))
    has = False
    if isinstance(accounts, list):
        seen: dict[str, int] = {}
        for index, account in enumerate(accounts):
            key = str(account)
            if key in seen:
                issues.append(
                    ConfigIssue(
                        f"accounts[{index}]",
                        f"duplicate account {key!r} (also accounts[{seen[key]}])",
                    )
                )
            else:
                seen[key] = index
        has = bool(accounts)
    if isinstance(accounts_file, str) and not accounts_file.strip():
        issues.append(ConfigIssue("accounts_file", "empty path: name the accounts file"))
        has = True
    elif isinstance(accounts_file, str):
        path = Path(accounts_file).expanduser()
        path = path if path.is_absolute() else base_dir / path
        found, file_issues = read_accounts_file(path)
        issues.extend(file_issues)
        if not found and not file_issues:
            issues.append(ConfigIssue("accounts_file", f"no accounts in {path}"))
        has = True  # found, or the file's problem is reported above
    elif accounts_file is not None:
        has = True  # not a path: the model reports it at accounts_file
    return has


def _check_step_ids(steps: list[Mapping[str, Any]], issues: list[ConfigIssue]) -> list[str]:
    ids: list[str] = []
    first: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.get("id") is None:
            continue
        step_id = _text(step.get("id"))
        if step_id in first:
            issues.append(
                ConfigIssue(
                    f"steps[{index}].id",
                    f"duplicate step id {step_id!r} (also steps[{first[step_id]}])",
                )
            )
        else:
            first[step_id] = index
            ids.append(step_id)
    return ids


def _check_dependencies(
    loc: str, step_id: str, deps: object, ids: list[str], issues: list[ConfigIssue]
) -> None:
    for index, dep in enumerate(_deps(deps)):
        dep_id = _text(dep)
        if dep_id == step_id:
            issues.append(
                ConfigIssue(f"{loc}.depends_on[{index}]", f"step {step_id!r} depends on itself")
            )
        elif dep_id not in ids:
            known = ", ".join(ids)
            issues.append(
                ConfigIssue(
                    f"{loc}.depends_on[{index}]", f"unknown step {dep_id!r} (known: {known})"
                )
            )


def _check_command(loc: str, step: Mapping[str, Any], issues: list[ConfigIssue]) -> None:
    command = step.get("command")
    if isinstance(command, str) and step.get("shell") is not True:
        issues.append(
            ConfigIssue(
                f"{loc}.command",
                "a command string needs shell: true (or give the command as a list)",
            )
        )
    params = step.get("params")
    known = list(BUILTIN_PLACEHOLDERS) + (
        [str(k) for k in params] if isinstance(params, Mapping) else []
    )
    parts = [command] if isinstance(command, str) else _list(command)
    for index, part in enumerate(parts):
        if not isinstance(part, str):
            continue
        where = f"{loc}.command" if isinstance(command, str) else f"{loc}.command[{index}]"
        try:
            names = placeholders(part)
        except ValueError as exc:
            issues.append(
                ConfigIssue(where, f"bad template {part!r}: {exc} (write {{{{ for a brace)")
            )
            continue
        for name in names:
            if name not in known:
                issues.append(
                    ConfigIssue(
                        where,
                        f"unknown placeholder {{{name}}} in {part!r} (known: {', '.join(known)})",
                    )
                )


def _check_policy(loc: str, policy: Mapping[str, Any], issues: list[ConfigIssue]) -> None:
    classify = policy.get("classify")
    named = list(classify) if isinstance(classify, Mapping) else []
    on = policy.get("on")
    if not isinstance(on, Mapping):
        return
    known = list(KNOWN_ERROR_CLASSES) + [n for n in named if n not in KNOWN_ERROR_CLASSES]
    for name in on:
        if name not in known:
            issues.append(
                ConfigIssue(
                    f"{loc}.on.{name}",
                    f"unknown error class {name!r} (known: {', '.join(known)})",
                )
            )


def _check_cycles(
    steps: list[Mapping[str, Any]], ids: list[str], issues: list[ConfigIssue]
) -> None:
    deps: dict[str, list[str]] = {}
    for step in steps:
        if step.get("id") is None:
            continue
        step_id = _text(step.get("id"))
        if step_id in deps:
            continue
        deps[step_id] = [
            _text(d)
            for d in _deps(step.get("depends_on"))
            if _text(d) in ids and _text(d) != step_id
        ]
    cycle = find_cycle(deps)
    if cycle:
        issues.append(ConfigIssue("steps", "dependency cycle: " + " -> ".join(cycle)))


def _check_schedule(schedule: object, issues: list[ConfigIssue]) -> None:
    if not isinstance(schedule, Mapping):
        return
    if schedule.get("cadence") is not None and schedule.get("cron") is not None:
        issues.append(ConfigIssue("schedule", "give either cadence or cron, not both"))
    from planner.units import parse_duration

    try:
        cadence = parse_duration(schedule["cadence"]) if "cadence" in schedule else None
        cap = parse_duration(schedule["max_interval"]) if "max_interval" in schedule else None
    except (ValueError, TypeError):
        return
    if cadence is not None and cap is not None and 0 < cap < cadence:
        issues.append(
            ConfigIssue(
                "schedule.max_interval",
                f"max_interval ({schedule['max_interval']}) is shorter than the cadence "
                f"({schedule['cadence']})",
            )
        )


def _check_alerts(alerts: object, issues: list[ConfigIssue]) -> None:
    if not isinstance(alerts, Mapping):
        return
    warning = alerts.get("warning", defaults.ALERT_WARNING)
    critical = alerts.get("critical", defaults.ALERT_CRITICAL)
    if (
        isinstance(warning, int | float)
        and isinstance(critical, int | float)
        and not isinstance(warning, bool)
        and warning > critical
    ):
        issues.append(
            ConfigIssue(
                "alerts.warning",
                f"warning threshold {warning} is above the critical threshold {critical}",
            )
        )
    for index, sink in enumerate(_list(alerts.get("sinks"))):
        if not isinstance(sink, Mapping):
            continue
        kind = sink.get("kind")
        needs = {"webhook": "url", "command": "command"}.get(str(kind))
        if needs and not sink.get(needs):
            issues.append(ConfigIssue(f"alerts.sinks[{index}]", f"a {kind} sink needs {needs!r}"))
