"""Pure helpers over a dependency graph given as ``{node: [nodes it depends on]}``.

Order is stable: among nodes that are ready together, the one listed first comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ancestors", "critical_path", "find_cycle", "levels", "topological_order"]


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]`` (a depends on b ...), or ``None``.

    Dependencies on unknown nodes are ignored here (they are reported elsewhere).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for dep in deps[node]:
            if dep not in colour:
                continue
            if colour[dep] == grey:
                return [*stack[stack.index(dep) :], dep]
            if colour[dep] == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[node] = black
        return None

    for node in deps:
        if colour[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Nodes so that each comes after everything it depends on (``ValueError`` on a cycle)."""
    remaining = {n: {d for d in ds if d in deps} for n, ds in deps.items()}
    order: list[str] = []
    while remaining:
        ready = [n for n in deps if n in remaining and not remaining[n]]
        if not ready:
            cycle = find_cycle(deps) or list(remaining)
            raise ValueError("dependency cycle: " + " -> ".join(cycle))
        for node in ready:
            order.append(node)
            del remaining[node]
        for pending in remaining.values():
            pending.difference_update(ready)
    return order


def levels(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Depth of each node: 0 for nodes with no dependencies, else 1 + deepest dependency."""
    depth: dict[str, int] = {}
    for node in topological_order(deps):
        depth[node] = 1 + max((depth[d] for d in deps[node] if d in depth), default=-1)
    return depth


def ancestors(deps: Mapping[str, Sequence[str]], nodes: Sequence[str]) -> set[str]:
    """Every node that ``nodes`` depend on, directly or not (``nodes`` excluded)."""
    seen: set[str] = set()
    todo = [d for n in nodes for d in deps.get(n, ())]
    while todo:
        node = todo.pop()
        if node in seen or node not in deps:
            continue
        seen.add(node)
        todo.extend(deps[node])
    return seen - set(nodes)


def critical_path(
    deps: Mapping[str, Sequence[str]], durations: Mapping[str, float]
) -> tuple[float, list[str]]:
    """The longest path through the graph by summed node duration: ``(length, nodes)``."""
    finish: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    for node in topological_order(deps):
        pred = max((d for d in deps[node] if d in finish), key=lambda d: finish[d], default=None)
        start = finish[pred] if pred is not None else 0.0
        finish[node] = start + float(durations.get(node, 0.0))
        best_pred[node] = pred
    if not finish:
        return 0.0, []
    end = max(finish, key=lambda n: finish[n])
    path: list[str] = []
    cursor: str | None = end
    while cursor is not None:
        path.append(cursor)
        cursor = best_pred[cursor]
    return finish[end], path[::-1]
