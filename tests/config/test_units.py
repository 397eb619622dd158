"""Durations and sizes as people write them."""

from __future__ import annotations

import pytest

from planner.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0.2s", 0.2),
        ("90s", 90),
        ("15m", 900),
        ("1.5h", 5400),
        ("1d", 86400),
        ("1h30m", 5400),
        ("PT1H30M", 5400),
        ("P1D", 86400),
        ("PT0.5S", 0.5),
        ("90", 90),
        (90, 90),
        (1.5, 1.5),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "abc", "5 parsecs", "h", "PT", "1h x", True, None, [1]])
def test_parse_duration_rejects_with_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MB", 512_000_000), ("2GiB", 2 * 1024**3), ("1.5GiB", int(1.5 * 1024**3)), (4096, 4096)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["12 parsecs", "GiB", True, "-"])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_formats_are_short_and_readable() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(42) == "42.0s"
    assert format_duration(725) == "12m 5s"
    assert format_duration(27.3 * 3600) == "27.3h"
    assert format_size(5.1 * 1024**3) == "5.1GiB"
