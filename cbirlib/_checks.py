"""Private argument validators shared by ``metrics``, ``hashing`` and ``index``."""

from __future__ import annotations

import numpy as np

__all__ = ["check_choice", "check_int"]


def check_choice(name, value, allowed):
    """Raise ``ValueError`` unless ``value`` is one of ``allowed`` (strings or bools)."""
    for option in allowed:
        if isinstance(option, bool):
            if isinstance(value, (bool, np.bool_)) and bool(value) is option:
                return
        elif isinstance(value, str) and value == option:
            return
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_int(name, value, *, minimum=1):
    """Return ``int(value)``; ``TypeError`` for non-integers (bools too), ``ValueError`` below ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
