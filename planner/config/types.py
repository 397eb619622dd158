"""The value types of a pipeline file shared by its sections: durations, sizes, ids,
command arguments, environment values, and the frozen base of every section."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from planner.units import parse_duration, parse_size

__all__ = [
    "Account",
    "Argument",
    "Duration",
    "EnvValue",
    "Frozen",
    "NonNegativeDuration",
    "Scalar",
    "Size",
    "StepId",
    "not_bool",
    "one_or_many",
]


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return seconds


def _non_negative_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"must be a duration >= 0, got {value!r}")
    return seconds


def _positive_size(value: object) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"must be a positive size, got {value!r}")
    return size


def not_bool(value: object) -> object:
    """A number field refuses ``true``/``false`` (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _id_text(value: object) -> object:
    """Step ids are strings; a bare YAML number (``id: 1``) is taken as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: Positive seconds, written as ``90s``, ``1.5h``, ``PT1H`` or a number.
Duration = Annotated[float, BeforeValidator(_positive_duration), PlainSerializer(float)]
#: Seconds >= 0.
NonNegativeDuration = Annotated[float, BeforeValidator(_non_negative_duration)]
#: Positive bytes, written as ``512MB``, ``2GiB`` or a number.
Size = Annotated[int, BeforeValidator(_positive_size)]
StepId = Annotated[str, BeforeValidator(_id_text), Field(min_length=1)]


def _env_text(value: object) -> object:
    """Env values are text; a bare number or boolean (``THREADS: 4``) is taken as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _arg_text(value: object) -> object:
    """A bare number or boolean in a command list (``[sleep, 5]``, ``[true]``) is taken as
    its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def one_or_many(value: object) -> object:
    """``depends_on: "1"`` means ``["1"]`` (also read by the raw-data checks)."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [value]
    return value


#: A command-line argument: text, or a number written bare.
Argument = Annotated[str, BeforeValidator(_arg_text)]
#: An environment value: text, or a number or boolean written bare in the file.
EnvValue = Annotated[str, BeforeValidator(_env_text)]
Account = Annotated[str, BeforeValidator(_id_text), Field(min_length=1)]
Scalar = str | int | float | bool


class Frozen(BaseModel):
    """A pipeline-file section: unknown keys refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
