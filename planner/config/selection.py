"""Choosing which steps of a pipeline run, in dependency order."""

from __future__ import annotations

from collections.abc import Sequence

from planner.config.models import Pipeline, Step
from planner.errors import ConfigError, ConfigIssue
from planner.graph import ancestors, topological_order

__all__ = ["dependency_map", "select_steps"]


def dependency_map(pipeline: Pipeline) -> dict[str, list[str]]:
    """``{step id: [ids it depends on]}`` in file order."""
    return {s.id: list(s.depends_on) for s in pipeline.steps}


def select_steps(
    pipeline: Pipeline, steps: Sequence[str] | None = None, *, with_deps: bool = False
) -> list[Step]:
    """The enabled steps to run, in dependency order.

    ``steps`` names a selection (all steps when ``None``); every dependency of a selected
    step must be selected too, or ``with_deps`` adds it. Raises :class:`ConfigError`.
    """
    deps = dependency_map(pipeline)
    source = str(pipeline.source or pipeline.name)
    if steps is None:
        chosen = set(deps)
    else:
        unknown = [s for s in steps if s not in deps]
        if unknown:
            known = ", ".join(deps)
            raise ConfigError(
                source,
                [ConfigIssue("--steps", f"unknown step {s!r} (known: {known})") for s in unknown],
            )
        chosen = set(steps)
        if with_deps:
            chosen |= ancestors(deps, list(steps))
        else:
            issues = [
                ConfigIssue(
                    "--steps",
                    f"step {step!r} depends on {dep!r}, which is not selected "
                    "(add it or use --with-deps)",
                )
                for step in steps
                for dep in deps[step]
                if dep not in chosen and pipeline.step(dep).enabled
            ]
            if issues:
                raise ConfigError(source, issues)
    order = topological_order(deps)
    return [pipeline.step(i) for i in order if i in chosen and pipeline.step(i).enabled]
