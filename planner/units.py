"""Durations and sizes as people write them, and back.

Durations: ``0.2s``, ``90s``, ``15m``, ``1.5h``, ``1d``, ``2w``, ISO 8601 (``PT1H30M``,
``P1D``), plain seconds (``90`` or ``90.5``). Sizes: ``512MB``, ``1.5GiB``, plain bytes.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_PART = re.compile(_NUMBER + r"\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_SIZE = re.compile(r"^" + _NUMBER + r"\s*([KMGTP]?i?B?)$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "p": 1000**5,
    "pb": 1000**5,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
    "pi": 1024**5,
    "pib": 1024**5,
}


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (a number or a string such as ``1.5h`` or ``PT90M``).

    Raises ``ValueError`` naming the value when it is not a finite duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 1.5h, 1d or PT1H)")
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {value!r}")
    return seconds


def _parse_duration_text(text: str) -> float:
    hint = f"not a duration: {text!r} (use e.g. 90s, 15m, 1.5h, 1d or PT1H)"
    if not text:
        raise ValueError(hint)
    try:
        return float(text)
    except ValueError:
        pass
    iso = _ISO.match(text)
    if iso and text.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return (
            parts.get("w", 0) * 604800
            + parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    compact = text.replace(" ", "")
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            raise ValueError(hint)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
    if pos != len(compact) or pos == 0:
        raise ValueError(hint)
    return total


def parse_size(value: object) -> int:
    """Bytes in ``value`` (a number of bytes or a string such as ``512MB`` or ``2GiB``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value.strip())
        if match:
            unit = match.group(2).lower()
            if unit in _SIZE_UNITS:
                return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"not a size: {value!r} (use e.g. 512MB, 1.5GiB or a number of bytes)")


def format_duration(seconds: float) -> str:
    """A short human form: ``850ms``, ``42.0s``, ``12m 5s``, ``27.3h``, ``3.2d``."""
    if not math.isfinite(seconds):
        return "∞"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1:
        return f"{sign}{s * 1000:.0f}ms"
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {int(s % 60)}s"
    if s < 86400 * 3:
        return f"{sign}{s / 3600:.1f}h"
    return f"{sign}{s / 86400:.1f}d"


def format_size(num_bytes: float) -> str:
    """A short human form in binary units: ``512.0MiB``, ``5.1GiB``."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"
