"""Field types shared by the settings sections (``tasks/<stage>/settings.py``, ``flows.params``).

Each refuses, with one sentence, a value that pydantic's plain types accept but no run can use:
an empty path (``Path("")`` is the current directory), a seed numpy refuses, a non-finite number.
The refusal happens when the parameters are built, so the command line (flows.cli names the flag)
and a UI-triggered run fail before any work. Importing this costs only pydantic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

#: Largest seed numpy's ``default_rng`` / ``RandomState`` and scikit-learn accept (2**32 - 1).
MAX_SEED = 2**32 - 1


def refuse_blank_path(value: Any) -> Any:
    """An empty path is refused: ``Path("")`` silently means the current directory, which is
    never what an unset ``$DATA`` or an empty form field meant."""
    if isinstance(value, str) and not value.strip():
        raise PydanticCustomError("empty_path", "a path is needed, not an empty string")
    return value


def refuse_non_finite(value: Any) -> Any:
    """nan and inf are refused before a union (``"scale" | float``) tries its members, so the
    user reads one message instead of one per member."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    try:
        number = float(value)
    except ValueError:
        return value  # a word: the union's own members judge it
    if not math.isfinite(number):
        raise PydanticCustomError("finite_number", "Input should be a finite number, not {value}", {"value": value})
    return value


#: A path that must not be empty (``Optional[NonEmptyPath]`` still takes None).
NonEmptyPath = Annotated[Path, BeforeValidator(refuse_blank_path)]
#: One seed for numpy, scikit-learn and TensorFlow: 0 .. 2**32 - 1.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def positive_or_cv(value: Any) -> Any:
    """A strength is the word ``cv`` or a number above 0 (judged before the union tries its
    members, so the user reads one message)."""
    if isinstance(value, bool):
        return value
    if value == "cv":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number > 0:
        raise PydanticCustomError(
            "positive_or_cv", "Input should be cv or a number greater than 0, not {value}", {"value": value}
        )
    return value
