"""Custom Great Expectations for class balance, built on GX's own ``column.value_counts`` metric.

GX ships no Expectation for "every class has at least N rows" or "largest/smallest class is
under a bound", and both are cheap aggregates of one value-count, so they are written here as
two small ``ColumnAggregateExpectation`` subclasses (no custom metric needed).

Import this module before a suite or a validation result that uses them is *loaded* from a
store: GX registers an Expectation class when its module is imported, and a suite read back
without the registration silently loses the unknown Expectations. ``expectations/__init__.py``
imports it, so ``import expectations`` is enough.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional, Union

import pandas as pd
from great_expectations.compatibility import pydantic
from great_expectations.expectations.expectation import ColumnAggregateExpectation

# The metric's defaults are used (sort by value, no collation).
_VALUE_COUNTS = "column.value_counts"


def _counts_of(metrics: dict) -> pd.Series:
    counts = metrics[_VALUE_COUNTS]
    return counts if isinstance(counts, pd.Series) else pd.Series(counts)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so results serialise to JSON and render in Data Docs."""
    return value.item() if hasattr(value, "item") else value


class ExpectColumnValueCountsToBeAtLeast(ColumnAggregateExpectation):
    """Expect every value of ``value_set`` to occur in the column at least ``min_count`` times.

    Meant for class labels: an absent class has count 0 and fails. The result lists each value
    under the minimum with its count (``details.below_minimum``), smallest first; the observed
    value is the smallest count.
    """

    value_set: list[Any] = pydantic.Field(description="Values (classes) that must occur.")
    min_count: int = pydantic.Field(1, ge=0, description="Minimum rows per value.")
    description: Union[str, None] = "Every class occurs at least `min_count` times."

    metric_dependencies: ClassVar[tuple[str, ...]] = (_VALUE_COUNTS,)
    success_keys: ClassVar[tuple[str, ...]] = ("value_set", "min_count")
    args_keys: ClassVar[tuple[str, ...]] = ("column", "value_set", "min_count")

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: Optional[dict] = None,
        execution_engine: Optional[Any] = None,
    ) -> dict[str, Any]:
        counts = _counts_of(metrics)
        observed = {_plain(k): int(v) for k, v in counts.items()}
        min_count = int(self.configuration.kwargs.get("min_count", 1))
        per_value = [(value, observed.get(value, 0)) for value in self.configuration.kwargs["value_set"]]
        below = sorted((item for item in per_value if item[1] < min_count), key=lambda item: item[1])
        smallest = min((count for _, count in per_value), default=0)
        return {
            "success": not below,
            "result": {
                "observed_value": smallest,
                # No unexpected_count/partial_unexpected_list: Data Docs would then expect the
                # row-level keys of a map Expectation (unexpected_percent) and fail to render.
                "details": {"below_minimum": [{"value": v, "count": c} for v, c in below]},
            },
        }


class ExpectColumnImbalanceRatioToBeLessThan(ColumnAggregateExpectation):
    """Expect (rows of the largest class) / (rows of the smallest present class) <= ``max_ratio``.

    Absent classes are left to `ExpectColumnValueCountsToBeAtLeast`; here the smallest class is
    the smallest one that occurs. The observed value is the ratio; details name both classes.
    """

    max_ratio: float = pydantic.Field(gt=0, description="Largest allowed largest/smallest ratio.")
    description: Union[str, None] = "Largest class / smallest class is at most `max_ratio`."

    metric_dependencies: ClassVar[tuple[str, ...]] = (_VALUE_COUNTS,)
    success_keys: ClassVar[tuple[str, ...]] = ("max_ratio",)
    args_keys: ClassVar[tuple[str, ...]] = ("column", "max_ratio")

    def _validate(
        self,
        metrics: dict,
        runtime_configuration: Optional[dict] = None,
        execution_engine: Optional[Any] = None,
    ) -> dict[str, Any]:
        counts = _counts_of(metrics)
        counts = counts[counts > 0]
        if counts.empty:
            return {"success": True, "result": {"observed_value": None, "details": {"note": "no rows"}}}
        largest, smallest = counts.idxmax(), counts.idxmin()
        ratio = float(counts.max()) / float(counts.min())
        max_ratio = float(self.configuration.kwargs["max_ratio"])
        return {
            "success": bool(ratio <= max_ratio) and not math.isnan(ratio),
            "result": {
                "observed_value": round(ratio, 4),
                "details": {
                    "largest": {"value": _plain(largest), "count": int(counts.max())},
                    "smallest": {"value": _plain(smallest), "count": int(counts.min())},
                },
            },
        }
