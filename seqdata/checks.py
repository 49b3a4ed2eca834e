"""One validator per rule, for the arguments of every config and function.

Each raises ``error`` (a layer's own type: `seqdata.errors.SpecError` here, trainer's
`ConfigError` there) with a message that names the argument, the value found and what
was expected. Messages speak of arguments, never of command-line flags: the CLIs map the
one to the other.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

from seqdata.errors import SpecError


def check_int(name: str, value: Any, low: int = 0, high: int | None = None, *,
              optional: bool = False, error: type[Exception] = SpecError) -> None:
    """``value`` is an integer in ``low..high`` (``high`` None: no upper bound); with
    ``optional``, None is allowed too.

    >>> check_int("workers", 2, 1)
    >>> check_int("workers", 0, 1)
    Traceback (most recent call last):
    ...
    seqdata.errors.SpecError: workers must be an integer >= 1, got 0
    """
    if value is None and optional:
        return
    bound = f">= {low}" if high is None else f"in {low}..{high}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low or (
            high is not None and value > high):
        raise error(f"{name} must be an integer {bound}, got {value!r}")


def check_number(name: str, value: Any, *, positive: bool = False,
                 error: type[Exception] = SpecError) -> None:
    """``value`` is a finite real number (and > 0 with ``positive``)."""
    kind = "a finite positive number" if positive else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not math.isfinite(value) or (positive and value <= 0):
        raise error(f"{name} must be {kind}, got {value!r}")


def check_choice(name: str, value: Any, choices: Collection[Any], *,
                 error: type[Exception] = SpecError) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_bool(name: str, value: Any, *, error: type[Exception] = SpecError) -> None:
    """``value`` is True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")
