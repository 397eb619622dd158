"""Property: whatever a pipeline file holds, validation returns a pipeline or clean issues."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.config import parse_pipeline
from planner.config.loader import check_pipeline_file

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
BASE = yaml.safe_load((EXAMPLES / "nightly.yaml").read_text())
SMALL = yaml.safe_load((EXAMPLES / "example.yaml").read_text())

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["auto", "24h", "-1s", "0", "{account}", "{x}", "1", "21", "{", "P1D"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(draw(st.sampled_from([BASE, SMALL])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = data
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        key = path[-1]
        if action == "replace":
            parent[key] = draw(junk)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(junk)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_validation_never_raises(data: dict[str, Any]) -> None:
    pipeline, issues = parse_pipeline(data, base_dir=EXAMPLES)
    if pipeline is None:
        assert issues, "an invalid pipeline must come with at least one issue"
    else:
        assert issues == []
    for issue in issues:
        assert isinstance(issue.loc, str) and isinstance(issue.msg, str) and issue.msg
        assert "\n" not in issue.msg


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_file_content_is_a_clean_report(tmp_path_factory: Any, content: bytes | str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    for suffix in (".yaml", ".json", ".toml"):
        path = folder / f"p{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        pipeline, issues = check_pipeline_file(path)
        assert pipeline is None and issues
